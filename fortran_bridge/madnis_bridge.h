/* madnis_bridge.h: the C ABI of a MadNIS bridge library.
 *
 * One library = one MadEvent SubProcesses/P* directory (built by fortran_bridge.build), or
 * anything else implementing these functions (tests/bridge_fixtures/toy_bridge.f90).
 * Conventions: arrays are C row-major, indices 0-based; momenta in GeV as (E, px, py, pz);
 * cross sections in pb. The library keeps global state: one instance per process, calls
 * from one thread only. Fortran STOP ends the process, so call it from a worker process
 * (fortran_bridge does: it re-runs the batch without the points that STOP or crash and
 * reports those with status 3, value 0 and uniform alpha; the library never writes 3).
 */
#ifndef MADNIS_BRIDGE_H
#define MADNIS_BRIDGE_H

/* Initialise: change the working directory to rundir (for a MadEvent P-dir: a directory
 * directly below it, like MadEvent's G directories, so that ../../Cards etc. resolve), read
 * the cards (setrun, setpara: run_card, param_card, PDFs), seed the random numbers used for
 * discrete choices in event records. Returns 0 on success. */
int madnis_init(const char *rundir, int seed);

/* With a channel-dependent scale (a MadEvent P-dir's dynamical_scale_choice = -1), whether each
 * point's scale channel may be drawn from alpha (default 1; 0: the generating channel's scale,
 * channel weights fixed). Call after madnis_init, before any other call. */
void madnis_allow_scale_draw(int on);

/* Whether each point draws one subprocess and mirror, with probability proportional to its parton
 * luminosity, and returns its contribution over that probability (an unbiased estimate of the sum,
 * as MadEvent's grouped subprocesses; 1), instead of summing them all (default 0: one matrix element
 * per subprocess and mirror at every point). Call after madnis_init, before any other call. */
void madnis_allow_subprocess_draw(int on);

/* Sizes and metadata. ndim: dimension of r (3*n_final - 4, +1 per PDF beam); n_channels:
 * MadEvent's configs; n_subprocesses: entries of madnis_subprocesses; ebeams[2] in GeV;
 * scale_depends_on_channel: 1 if the integrand depends on the channel that generated the
 * point, so channel weights must stay MadEvent's (a MadEvent P-dir: dynamical_scale_choice = -1
 * with a dynamical scale, for a process whose alpha depends on the scale; otherwise each
 * point's scale channel is drawn from alpha and the value is the same function of the point
 * in every channel). */
void madnis_info(int *ndim, int *n_channels, int *nexternal, int *ninitial,
                 int *n_subprocesses, double *ebeams, int *scale_depends_on_channel);

/* Channel c (0-based) is MadEvent config config[c] (configs.inc numbering); symmetry_group[c]
 * is the channel of the config whose G directory integrates c (symfact.dat): channels of one
 * group use the same phase-space tree up to a permutation of identical particles. */
void madnis_channels(int *config, int *symmetry_group);

/* Flavour assignments: pdg[s*nexternal + i] for subprocess entry s; mirror[s] = 1 where the
 * beams are swapped with respect to the matrix element's ordering. */
void madnis_subprocesses(int *pdg, int *mirror);

/* Evaluate n points. In: channel[n], r[n*ndim] in [0,1] (a MadEvent P-dir clamps r to
 * RANMAR's range [2^-24, 1 - 2^-24]: MadEvent STOPs on the faces of the cube). Out:
 * momenta[n*nexternal*4] (as seen by the matrix elements, lab frame of the partons), x1[n], x2[n], value[n] =
 * f(x(r)) * J_channel(r) in pb (summed over grouped subprocesses and mirrors or one drawn, before any
 * channel weight), alpha[n*n_channels] (single-diagram-enhancement channel weights summing to
 * 1; uniform where value is 0), status[n] (0 passed cuts, 1 no phase-space point, 2 failed
 * cuts). Deterministic: same inputs give identical outputs, in any batch composition (points
 * are processed grouped by channel inside). Returns 0, or 1 for a channel
 * out of range (nothing evaluated). */
int madnis_evaluate(int n, const int *channel, const double *r, double *momenta,
                    double *x1, double *x2, double *value, double *alpha, int *status);

/* Matrix-element evaluations that madnis_event_record makes per record (1 or 2: where a subprocess,
 * mirror or scale channel is drawn, the point is evaluated before its record). */
int madnis_record_evaluations(void);

/* Largest number of Les Houches entries (externals plus s-channel resonances) per event. */
int madnis_max_nup(void);

/* Les Houches records for n points (arrays padded to maxnup entries per event). In: channel,
 * r as for madnis_evaluate, u[n] uniform in [0,1) choosing the subprocess/mirror with
 * probability proportional to its contribution, seed for the helicity, flavour and colour
 * choices. Out: nup[n] (0 where value is 0), pdg, status (-1 incoming, 1 final, 2 resonance),
 * mothers[.. * 2] (1-based, 0 = none), color[.. * 2] (ICOLUP), momenta[.. * 5] = (px, py, pz,
 * E, m) in the lab frame, helicity, scale (SCALUP), aqcd, aqed, subprocess[n] (0-based index
 * into madnis_subprocesses, -1 if none). Returns 0, 1 for a channel out of range, 2 if maxnup
 * is too small. */
int madnis_event_record(int n, const int *channel, const double *r, const double *u, int seed,
                        int maxnup, int *nup, int *pdg, int *status, int *mothers, int *color,
                        double *momenta, int *helicity, double *scale, double *aqcd,
                        double *aqed, int *subprocess);

#endif
