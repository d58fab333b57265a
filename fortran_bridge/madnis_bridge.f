c madnis_bridge.f: C ABI (madnis_bridge.h) around one MadEvent SubProcesses/P* directory.
c
c Compiled inside the P-dir with its own includes and linked with its objects (driver.o
c with its main program hidden). MadEvent's own code does the work: gen_mom (genps.f)
c maps r to momenta with the channel's tree and MadEvent's initial (flat) VEGAS grid incl.
c its Breit-Wigner transformations, DSIGPROC (auto_dsig.f) applies cuts, scales, PDFs and
c |M|^2 per grouped subprocess and mirror. The glue replaces only MadEvent's random choices:
c   ntuple()      returns the caller's r for the phase-space dimensions,
c   unwgt()       stores nothing unless an event record is requested,
c   write_event() captures the Les Houches record instead of writing it.
c (The originals are made weak symbols by build.py.) The integrand sums the subprocesses and
c mirrors, or (madnis_allow_subprocess_draw) draws one per point as MadEvent's grouped
c subprocesses do, with probability proportional to its parton luminosity, a fixed function of
c the point; alpha follows SMATRIX's single-diagram enhancement.
c With MadEvent's channel-dependent scale (dynamical_scale_choice = -1: the scale clusters with
c the channel's diagram) each subprocess's scale channel is drawn at each point from alpha, the
c draw a fixed function of the point (madnis_draw_scale): the integrand is then the same function
c of the point in every channel and learned channel weights keep MadEvent's cross section.
c An event record sets RANMAR's state (its common blocks) from the run's seed and the point,
c so that its flavour, helicity and colour draws do not depend on the batch or the worker.

c     r is kept in MadEvent's own range, that of RANMAR (multiples of 2**-24 in [2**-24,
c     1 - 2**-24]): on the faces of the cube (0, 1, or float32-rounded/denormal values next
c     to them) the kinematics degenerate and MadEvent STOPs (x = 1 fails the PDF; the
c     scale's clustering fails, cluster.f "Invalid combination") or gives NaN.
      subroutine ntuple(x, a, b, ii, jconfig)
      implicit none
      include 'genps.inc'
      include 'madnis_glue.inc'
      double precision x, a, b, rv, rmin
      parameter (rmin = 5.9604644775390625d-8)
      integer ii, jconfig
      if (mg_in_eval .and. ii .ge. 1 .and. ii .le. mg_ndim) then
         x = a + (b - a)*min(max(mg_r(ii), rmin), 1d0 - rmin)
      else
         call ranmar(rv)
         x = a + (b - a)*rv
      endif
      end

      subroutine unwgt(px, wgt, numproc)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'madnis_glue.inc'
      double precision px(0:3, nexternal), wgt
      integer numproc
      double precision twgt, maxwgt, swgt(maxevents)
      integer lun, nw, itmin
      common/to_unwgt/twgt, maxwgt, swgt, lun, nw, itmin
      if (mg_record) then
         nw = 0
         call write_leshouche(px, wgt, numproc, .true.)
      endif
      end

      subroutine write_event(lun, p, wgt, npart, ic, ievent, scale,
     &     aqcd, aqed, buff, u_syst, s_buff, nclus, buffclus)
      implicit none
      include 'genps.inc'
      include 'madnis_glue.inc'
      integer lun, npart, ievent, nclus, ic(7, *), i, j
      double precision p(0:4, *), wgt, scale, aqcd, aqed
      character*(*) buff, s_buff(*), buffclus(*)
      logical u_syst
      mg_rec_npart = min(npart, mg_maxnup)
      do i = 1, mg_rec_npart
         do j = 1, 7
            mg_rec_ic(j, i) = ic(j, i)
         enddo
         do j = 0, 4
            mg_rec_p(j, i) = p(j, i)
         enddo
      enddo
      mg_rec_scale = scale
      mg_rec_aqcd = aqcd
      mg_rec_aqed = aqed
      end

c ---------------------------------------------------------------------------
      integer(c_int) function madnis_init(rundir, seed)
     &     bind(C, name='madnis_init')
      use iso_c_binding
      implicit none
      character(kind=c_char), dimension(*) :: rundir
      integer(c_int), value :: seed
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'run.inc'
      include 'coupl.inc'
      include 'madnis_glue.inc'
      double precision zero
      parameter (zero=0d0)
      character*512 path
      integer i, ierr, ndim, ninvar
      double precision pmass(nexternal)
      common/to_mass/pmass
      character*30 param_card_name
      common/to_param_card_name/param_card_name
      double precision twgt, maxwgt, swgt(maxevents)
      integer lun, nw, itmin
      common/to_unwgt/twgt, maxwgt, swgt, lun, nw, itmin
      integer isum_hel
      logical multi_channel
      common/to_matrix/isum_hel, multi_channel
      integer use_cut
      common/to_weight/use_cut
      logical init_mode
      common/to_determine_zero_hel/init_mode
      integer minvar(maxdim, lmaxconfigs)
      common/to_invar/minvar
      integer madnis_ndim
      path = ' '
      i = 1
      do while (rundir(i) .ne. c_null_char .and. i .le. len(path))
         path(i:i) = rundir(i)
         i = i + 1
      enddo
      call chdir(path(1:i-1), ierr)
      if (ierr .ne. 0) then
         madnis_init = 1
         return
      endif
      hel_picked = -1
      hel_jacobian = 1d0
      lun = 27
      open(unit=lun, status='scratch')
      twgt = -2d0
      param_card_name = 'param_card.dat'
      call setrun
      call setpara(param_card_name)
      include 'pmass.inc'
      call setcuts
      call init_good_hel()
      isum_hel = 0
      multi_channel = .false.
      init_mode = .false.
      use_cut = 0
      mg_in_eval = .false.
      mg_record = .false.
      mg_allow_draw = .true.
      mg_sub_draw = .false.
      mg_keep_cuts = .false.
      ndim = madnis_ndim()
      mg_ndim = ndim
      ninvar = ndim
      minvar(1, 1) = 0
      call sample_init(ndim, 1000, 1, ninvar, 1)
      call rmarin(1802 + mod(abs(seed), 29000), 9373)
      madnis_init = 0
      end

      integer function madnis_ndim()
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'run.inc'
      madnis_ndim = max(3*(nexternal - nincoming) - 4, 0)
      if (nincoming .gt. 1 .and. abs(lpp(1)) .ge. 1)
     &     madnis_ndim = madnis_ndim + 1
      if (nincoming .gt. 1 .and. abs(lpp(2)) .ge. 1)
     &     madnis_ndim = madnis_ndim + 1
      end

      subroutine madnis_info(ndim, nchan, nexter, ninit, nsub, ebeams,
     &     scale_dep) bind(C, name='madnis_info')
      use iso_c_binding
      implicit none
      integer(c_int) :: ndim, nchan, nexter, ninit, nsub, scale_dep
      real(c_double) :: ebeams(2)
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'run.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer madnis_ndim, madnis_nsub
      logical madnis_scale_dep, madnis_draw_scale
      ndim = madnis_ndim()
      nchan = mapconfig(0)
      nexter = nexternal
      ninit = nincoming
      nsub = madnis_nsub()
      ebeams(1) = ebeam(1)
      ebeams(2) = ebeam(2)
      scale_dep = 0
      if (madnis_scale_dep() .and. .not. madnis_draw_scale()) scale_dep = 1
      end

c     MadEvent's scale depends on the channel: dynamical_scale_choice = -1 clusters with the
c     channel's diagram (ICONFIG) unless every scale is fixed.
      logical function madnis_scale_dep()
      implicit none
      include 'genps.inc'
      include 'run.inc'
      madnis_scale_dep = dynamical_scale_choice .eq. -1 .and.
     &     (.not. fixed_ren_scale .or. .not. fixed_fac_scale1
     &     .or. .not. fixed_fac_scale2)
      end

c     Whether each point draws its scale channel (madnis_point): MadEvent's integral is
c       I = sum_k int dx sum_i alpha_ki(x) f_ki(x),
c     f_ki subprocess k's contribution with the scales clustered with channel i's diagram, alpha_ki
c     its single-diagram-enhancement weights. So sum_i alpha_ki f_ki is estimated without bias by
c     f_ki for one i drawn with probability alpha_ki(x): the integrand no longer depends on the
c     channel that generated x, and the prior (the alpha_k averaged over subprocesses) is one
c     function of x as long as alpha_k does not depend on the scale. It does not when every
c     diagram of a subprocess has the same coupling orders (alpha_s cancels in |M_i|^2 / sum);
c     then also |M|^2 goes as alpha_s^n, and f_ki = f_kj L_i/L_j (alpha_s,i/alpha_s,j)^n with
c     L the parton luminosity: the drawn channel costs its clustering and PDFs, not a second
c     matrix element (where alpha_s differs and no probe point showed n: a second one). Probed
c     once, at points of fixed pseudo-random r after SMATRIX's helicity warm-up, per subprocess
c     with two or more channels, its first channel against its others (10 pairs): alpha_k must
c     agree to 1e-9, n come out an integer and f_k at the other channel's scales equal the
c     rescaled one to 1e-9 (which fails where anything else in DSIG1 depends on the channel,
c     e.g. MLM matching's Sudakov weights). If any check fails, or too few points
c     compare, or the caller allows no draw (madnis_allow_scale_draw), the scale channel stays
c     the generating channel and the channel weights MadEvent's (madnis_info reports the
c     dependence).
      logical function madnis_draw_scale()
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'madnis_glue.inc'
      integer confsub(maxsproc, lmaxconfigs)
      include 'config_subproc_map.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
c     per subprocess: the alpha_s power n of |M|^2 (-1: not known) and its first channel (0: none),
c     for madnis_point
      integer nqcd(maxsproc), cfirst(maxsproc)
      common/madnis_scale_draw/nqcd, cfirst
      logical madnis_scale_dep, first, draw, done
      integer itry, ichan, d, k, c, i
      integer c1, c2, n, pick
      integer nk(maxsproc), ncmp(maxsproc)
      integer nwarm(maxsproc)
      integer*8 seq
      double precision p(0:3, max_particles+1), pout(0:3, nexternal)
      double precision rr(maxdim), wgt, f1, f2, pd1, pd2, as1, as2
      double precision ratio, power
      double precision w1(lmaxconfigs), w2(lmaxconfigs)
      save first, draw
      data first/.true./, draw/.false./
      madnis_draw_scale = draw
      if (.not. first) return
      first = .false.
      do k = 1, maxsproc
         nqcd(k) = -1
         nwarm(k) = 0
         ncmp(k) = 0
         nk(k) = 0
         cfirst(k) = 0
         do c = 1, mapconfig(0)
            if (confsub(k, c) .ne. 0) then
               nk(k) = nk(k) + 1
               if (cfirst(k) .eq. 0) cfirst(k) = c
            endif
         enddo
      enddo
      if (.not. madnis_scale_dep()) return
      if (.not. mg_allow_draw) return
      seq = 20231_8
      do itry = 1, 4000
         ichan = 1 + mod(itry - 1, mapconfig(0))
         do d = 1, mg_ndim
            seq = mod(48271_8*seq, 2147483647_8)
            rr(d) = dble(seq)/2147483647d0
         enddo
         call madnis_phase_space(ichan, rr, p, pout, wgt)
         if (p(0, 1) .lt. 0d0) cycle
         done = .true.
         do k = 1, maxsproc
            if (nk(k) .lt. 2 .or. ncmp(k) .ge. 10) cycle
            done = .false.
c           the first channel of k against one of its others, in turn
            c1 = cfirst(k)
            pick = 2 + mod(itry, nk(k) - 1)
            c2 = 0
            n = 0
            do c = 1, mapconfig(0)
               if (confsub(k, c) .ne. 0) then
                  n = n + 1
                  if (n .eq. pick) c2 = c
               endif
            enddo
            call madnis_sub_weights(pout, k, 1, c1, f1, w1)
            if (f1 .eq. 0d0) cycle
c           SMATRIX sums every helicity in its first MAXTRIES points, later only the non-vanishing
c           ones, which changes AMP2: compare after that warm-up
            nwarm(k) = nwarm(k) + 1
            if (nwarm(k) .le. 40) cycle
            call madnis_sub_weights(pout, k, 1, c2, f2, w2)
            if (f2 .eq. 0d0) cycle
            do c = 1, mapconfig(0)
               if (abs(w1(c) - w2(c)) .gt. 1d-9) return
            enddo
c           f = luminosity x |M|^2 (alpha_s^n, n from the first two scales apart) x what the scale
c           does not change: the other channel's f follows from the luminosity and alpha_s alone
            call madnis_luminosity(pout, k, 1, c1, pd1, as1)
            call madnis_luminosity(pout, k, 1, c2, pd2, as2)
            if (pd1 .le. 0d0 .or. pd2 .le. 0d0) return
            ratio = (f2/pd2)/(f1/pd1)
            if (as2 .eq. as1) then
               if (abs(ratio - 1d0) .gt. 1d-9) return
            else
               if (nqcd(k) .lt. 0) then
                  if (abs(log(as2/as1)) .lt. 1d-3) cycle
                  power = log(ratio)/log(as2/as1)
                  if (abs(power - nint(power)) .gt. 1d-6
     &                 .or. power .lt. 0d0) return
                  nqcd(k) = nint(power)
               endif
               if (abs(ratio - (as2/as1)**nqcd(k)) .gt. 1d-9*ratio) return
            endif
            ncmp(k) = ncmp(k) + 1
         enddo
         if (done) exit
      enddo
      draw = done
      madnis_draw_scale = draw
      end

c     MadEvent's cuts and scales (Q2FACT, SCALE, G, CUTSPASSED) of subprocess k, mirror m at the
c     momenta pout with the scales clustered with channel c (DSIG1 in its mode 3: nothing else).
      subroutine madnis_scales(pout, k, m, c)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      integer k, m, c
      double precision pout(0:3, nexternal), p(0:3, max_particles+1), f
      call madnis_momenta_for(pout, c, p)
      call madnis_dsigproc(p, k, m, c, 3, f)
      end

c     The parton luminosity PD(0) of subprocess k, mirror m at the momenta pout with the scales
c     clustered with channel c, and alpha_s at that renormalisation scale (MadEvent's cuts and
c     scales, DSIG1 in its mode 4: no matrix element).
      subroutine madnis_luminosity(pout, k, m, c, pd, as)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'coupl.inc'
      integer k, m, c
      double precision pout(0:3, nexternal), pd, as
      double precision p(0:3, max_particles+1), pi
      parameter (pi = 3.141592653589793d0)
      call madnis_momenta_for(pout, c, p)
      call madnis_dsigproc(p, k, m, c, 4, pd)
      as = g**2/(4d0*pi)
      end

c     Whether an event record's own evaluation is the only one: one subprocess, no mirror, no scale
c     channel to draw (else the point is evaluated first to choose them).
      logical function madnis_record_alone()
      implicit none
      include 'genps.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      integer i
      logical mirrorprocs(maxsproc)
      include 'mirrorprocs.inc'
      logical madnis_draw_scale
      madnis_record_alone = maxsproc .eq. 1 .and. .not. mirrorprocs(1)
     &     .and. .not. madnis_draw_scale()
      end

c     Matrix-element evaluations per event record (madnis_record_alone: 1, else 2).
      integer(c_int) function madnis_record_evaluations() bind(C,
     &     name='madnis_record_evaluations')
      use iso_c_binding
      implicit none
      logical madnis_record_alone
      madnis_record_evaluations = 2
      if (madnis_record_alone()) madnis_record_evaluations = 1
      end

c     Whether the scale channel may be drawn (madnis_draw_scale; on unless the caller says 0).
c     Call after madnis_init, before anything else.
      subroutine madnis_allow_scale_draw(on) bind(C,
     &     name='madnis_allow_scale_draw')
      use iso_c_binding
      implicit none
      integer(c_int), value :: on
      include 'genps.inc'
      include 'madnis_glue.inc'
      mg_allow_draw = on .ne. 0
      end

c     Whether each point draws one subprocess and mirror (madnis_pick_subprocess) instead of summing
c     them all (default 0). Call after madnis_init, before anything else.
      subroutine madnis_allow_subprocess_draw(on) bind(C,
     &     name='madnis_allow_subprocess_draw')
      use iso_c_binding
      implicit none
      integer(c_int), value :: on
      include 'genps.inc'
      include 'madnis_glue.inc'
      mg_sub_draw = on .ne. 0
      end

c     The channel whose scales subprocess k is evaluated with at a point of channel ichan (madnis_point
c     and madnis_pick_subprocess), 0 where the point skips k. As MadEvent's DSIG: a subprocess without
c     the channel's diagram (CONFSUB = 0, e.g. the t-channel quark of u u~ > w+ w- vs d d~ > w+ w-)
c     adds nothing to this channel (its alpha is 0) and, with a channel-dependent scale, cannot be
c     clustered with the channel's diagram: skipped then, unless the scale channel is drawn (draw),
c     which starts from k's first channel. With a channel-independent scale it is evaluated, so that
c     alpha is the same function of the point in every channel (trained channel weights need that).
      integer function madnis_sub_channel(k, ichan, draw, scale_dep)
      implicit none
      include 'genps.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      integer k, ichan
      logical draw, scale_dep
      integer confsub(maxsproc, lmaxconfigs)
      include 'config_subproc_map.inc'
      integer nqcd(maxsproc), cfirst(maxsproc)
      common/madnis_scale_draw/nqcd, cfirst
      integer i
      madnis_sub_channel = ichan
      if (confsub(k, ichan) .ne. 0) return
      if (draw) then
         madnis_sub_channel = cfirst(k)
      else if (scale_dep) then
         madnis_sub_channel = 0
      endif
      end

c     One subprocess k and mirror m of those the point would sum (draw: each with the scale of
c     channel ichan where it has ichan's diagram, else of its first channel; else those with ichan's
c     diagram where the scale depends on the channel), drawn with probability p proportional to
c     L_km + 1e-3 <L>, L the parton luminosity PD(0) (DSIGPROC mode 4: PDFs, no matrix element),
c     as MadEvent's DSIG draws a grouped subprocess before its grid has learnt the matrix elements.
c     As there, the luminosities use the cuts and scales of the first subprocess (setcuts gives a
c     P-dir one set of cuts; clustering costs more than the PDFs), here once per mirror (cuts need
c     not be symmetric under it); the chosen one is then evaluated with its own. The floor keeps
c     p > 0 wherever f may be non-zero. The draw is a fixed function of the point
c     (madnis_point_hash, its own multiplier: independent of the scale channel's draw); fac = 1/p
c     makes f_km * fac an unbiased estimate of the sum. passed: a mirror passed the cuts; kc = 0
c     where no luminosity is positive (no matrix element to evaluate).
      subroutine madnis_pick_subprocess(pout, r, ichan, draw, scale_dep,
     &     kc, mc, fac, passed)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'madnis_glue.inc'
      integer ichan, kc, mc
      logical draw, scale_dep, passed
      double precision pout(0:3, nexternal), r(*), fac
      logical mirrorprocs(maxsproc)
      include 'mirrorprocs.inc'
      logical cutsdone, cutspassed
      common/to_cutsdone/cutsdone, cutspassed
      integer i, k, m, c0, n, madnis_sub_channel
      double precision lum(2, maxsproc), lsum, acc, u, pd, as, floor
      double precision madnis_point_hash
      lsum = 0d0
      n = 0
      do m = 1, 2
         mg_keep_cuts = .false.
         do k = 1, maxsproc
            lum(m, k) = -1d0
            c0 = madnis_sub_channel(k, ichan, draw, scale_dep)
            if (c0 .eq. 0) cycle
            if (m .eq. 2 .and. .not. mirrorprocs(k)) cycle
            call madnis_luminosity(pout, k, m, c0, pd, as)
            if (.not. mg_keep_cuts) then
               if (cutspassed) passed = .true.
               mg_keep_cuts = .true.
            endif
            lum(m, k) = abs(pd)
            lsum = lsum + lum(m, k)
            n = n + 1
         enddo
      enddo
      mg_keep_cuts = .false.
      kc = 0
      mc = 0
      if (lsum .eq. 0d0) return
      floor = 1d-3*lsum/n
      u = madnis_point_hash(r, 1, 69621_8)*(lsum + n*floor)
      acc = 0d0
      do m = 1, 2
         do k = 1, maxsproc
            if (lum(m, k) .ge. 0d0) then
               acc = acc + lum(m, k) + floor
c              u beyond the rounded sum: the last one
               if (kc .eq. 0 .or. acc - lum(m, k) - floor .le. u) then
                  kc = k
                  mc = m
               endif
            endif
         enddo
      enddo
      fac = (lsum + n*floor)/(lum(mc, kc) + floor)
      end

c     Subprocess k, mirror m at the momenta pout (as the matrix elements see them) with the scale
c     clustered with channel c: its contribution f (pb, madnis_dsigproc) and, where f is not 0, its
c     single-diagram-enhancement weights w(1..nconf) normalised to 1 (SMATRIX's AMP2 times the
c     channel's cut, as MadEvent's sde_strategy says).
      subroutine madnis_sub_weights(pout, k, m, c, f, w)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'run.inc'
      integer k, m, c
      double precision pout(0:3, nexternal), f, w(*)
      integer confsub(maxsproc, lmaxconfigs)
      include 'config_subproc_map.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      double precision amp2(maxamps), jamp2(0:maxflow)
      common/to_amps/amp2, jamp2
      double precision p(0:3, max_particles+1), p1(0:3, nexternal)
      double precision xtot, get_channel_cut
      external get_channel_cut
      integer i, j, nconf
      nconf = mapconfig(0)
      call madnis_momenta_for(pout, c, p)
      call madnis_dsigproc(p, k, m, c, 0, f)
      if (f .eq. 0d0) return
      do i = 1, nexternal
         do j = 0, 3
            p1(j, i) = pout(j, i)
         enddo
         if (m .eq. 2) then
            p1(2, i) = -p1(2, i)
            p1(3, i) = -p1(3, i)
         endif
      enddo
      xtot = 0d0
      do i = 1, nconf
         w(i) = 0d0
         j = confsub(k, i)
         if (j .ne. 0) then
            if (sde_strat .eq. 1) then
               w(i) = amp2(j)*get_channel_cut(p1, i)
            else
               w(i) = get_channel_cut(p1, i)
            endif
            xtot = xtot + w(i)
         endif
      enddo
      do i = 1, nconf
         if (xtot .ne. 0d0) then
            w(i) = w(i)/xtot
         else
            w(i) = 1d0/nconf
         endif
      enddo
      end

c     The momenta p that channel c's permutation (DSIGPROC's SWITCHMOM) turns into pout.
      subroutine madnis_momenta_for(pout, c, p)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      integer c
      double precision pout(0:3, nexternal), p(0:3, max_particles+1)
      integer perms(nexternal, lmaxconfigs)
      include 'symperms.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer a, i, j
      do a = 1, nexternal
         do j = 0, 3
            p(j, perms(a, mapconfig(c))) = pout(j, a)
         enddo
      enddo
      end

c     A number uniform in (0, 1), a fixed function of the point r (its bits) and of salt: the
c     scale channel drawn for an evaluation is drawn again for the point's event record.
      double precision function madnis_point_uniform(r, salt)
      implicit none
      double precision r(*), madnis_point_hash
      integer salt
      madnis_point_uniform = madnis_point_hash(r, salt, 48271_8)
      end

c     The hash behind madnis_point_uniform: a Lehmer generator (multiplier mult, modulus 2^31 - 1)
c     fed with the bits of r. Salt enters affinely, so two salts of one multiplier give numbers a
c     fixed shift apart; draws that must be independent of each other use different multipliers.
      double precision function madnis_point_hash(r, salt, mult)
      implicit none
      include 'genps.inc'
      include 'madnis_glue.inc'
      double precision r(*)
      integer salt, d
      integer*8 mult, x, bits
      x = 1_8 + salt
      do d = 1, mg_ndim
         bits = iand(transfer(r(d), bits), huge(bits))
         x = mod(mult*x + mod(bits, 2147483647_8), 2147483647_8)
      enddo
      do d = 1, 4
         x = mod(mult*x, 2147483647_8)
      enddo
      if (x .eq. 0_8) x = 1_8
      madnis_point_hash = dble(x)/2147483647d0
      end

c     Channels are MadEvent's configs 1..mapconfig(0); symmetry group = the representative
c     config whose G directory integrates it (symfact.dat, else symfact_orig.dat).
      subroutine madnis_channels(config, group) bind(C,
     &     name='madnis_channels')
      use iso_c_binding
      implicit none
      include 'maxconfigs.inc'
      integer(c_int) :: config(*), group(*)
      integer rep(lmaxconfigs)
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer i
      call madnis_representatives(rep)
      do i = 1, mapconfig(0)
         config(i) = mapconfig(i)
         group(i) = rep(i) - 1
      enddo
      end

      subroutine madnis_representatives(rep)
      implicit none
      include 'maxconfigs.inc'
      integer rep(lmaxconfigs)
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer i, j, ifact, lun
      double precision xconf
      do i = 1, mapconfig(0)
         rep(i) = i
      enddo
      lun = 93
      open(unit=lun, file='../symfact.dat', status='old', err=10)
      goto 20
 10   open(unit=lun, file='../symfact_orig.dat', status='old', err=40)
 20   read(lun, *, err=30, end=30) xconf, ifact
      do i = 1, mapconfig(0)
         if (mapconfig(i) .eq. int(xconf) .and. ifact .lt. 0) then
            do j = 1, mapconfig(0)
               if (mapconfig(j) .eq. -ifact) rep(i) = j
            enddo
         endif
      enddo
      goto 20
 30   close(lun)
 40   return
      end

c     The one enumeration of (subprocess k, flavour ip, mirror m) entries, in the order of
c     madnis_subprocesses' list: n entries, entry i is (ks(i), ips(i), ms(i)), m = 2 mirrored.
      subroutine madnis_sub_list(n, ks, ips, ms)
      implicit none
      include 'nexternal.inc'
      include 'maxamps.inc'
      integer n, ks(2*maxproc*maxsproc), ips(2*maxproc*maxsproc)
      integer ms(2*maxproc*maxsproc)
      integer idup(nexternal, maxproc, maxsproc)
      integer mothup(2, nexternal)
      integer icolup(2, nexternal, maxflow, maxsproc)
      include 'leshouche.inc'
      logical mirrorprocs(maxsproc)
      include 'mirrorprocs.inc'
      integer k, ip, im, i
      n = 0
      do k = 1, maxsproc
         do ip = 1, maxproc
            if (idup(1, ip, k) .ne. 0) then
               do im = 1, 2
                  if (im .eq. 1 .or. mirrorprocs(k)) then
                     n = n + 1
                     ks(n) = k
                     ips(n) = ip
                     ms(n) = im
                  endif
               enddo
            endif
         enddo
      enddo
      end

      integer function madnis_nsub()
      implicit none
      include 'maxamps.inc'
      integer n, ks(2*maxproc*maxsproc), ips(2*maxproc*maxsproc)
      integer ms(2*maxproc*maxsproc)
      call madnis_sub_list(n, ks, ips, ms)
      madnis_nsub = n
      end

c     Index (1-based) of (subprocess k, flavour ipsel, mirror m) in madnis_subprocesses' list.
      integer function madnis_sub_index(kk, ipsel, m)
      implicit none
      include 'maxamps.inc'
      integer kk, ipsel, m
      integer n, i, ks(2*maxproc*maxsproc), ips(2*maxproc*maxsproc)
      integer ms(2*maxproc*maxsproc)
      call madnis_sub_list(n, ks, ips, ms)
      madnis_sub_index = 0
      do i = 1, n
         if (ks(i) .eq. kk .and. ips(i) .eq. ipsel .and. ms(i) .eq. m)
     &        madnis_sub_index = i
      enddo
      end

      subroutine madnis_subprocesses(pdg, mirror) bind(C,
     &     name='madnis_subprocesses')
      use iso_c_binding
      implicit none
      include 'nexternal.inc'
      include 'maxamps.inc'
      integer(c_int) :: pdg(nexternal, *), mirror(*)
      integer idup(nexternal, maxproc, maxsproc)
      integer mothup(2, nexternal)
      integer icolup(2, nexternal, maxflow, maxsproc)
      include 'leshouche.inc'
      integer n, i, j, ks(2*maxproc*maxsproc), ips(2*maxproc*maxsproc)
      integer ms(2*maxproc*maxsproc)
      call madnis_sub_list(n, ks, ips, ms)
      do i = 1, n
         do j = 1, nexternal
            pdg(j, i) = idup(j, ips(i), ks(i))
         enddo
         mirror(i) = ms(i) - 1
         if (ms(i) .eq. 2) then
            pdg(1, i) = idup(2, ips(i), ks(i))
            pdg(2, i) = idup(1, ips(i), ks(i))
         endif
      enddo
      end

c ---------------------------------------------------------------------------
c     Set up MadEvent's phase-space generator for the tree of config irep (what gen_mom's
c     first call and the G directory's driver do for one channel).
      subroutine madnis_configure(irep)
      implicit none
      include 'genps.inc'
      include 'maxconfigs.inc'
      include 'madnis_glue.inc'
      integer irep
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer mincfig, maxcfig
      common/to_configs/mincfig, maxcfig
      integer diag_number
      common/to_diag_number/diag_number
      integer current, idiag, ninvar
      double precision maxwgt, wgt, x(maxinvar), p(0:3, max_particles+1)
      logical first
      save current, first
      data current/0/, first/.true./
      if (irep .eq. current) return
      call madnis_reset_mapping()
      idiag = mapconfig(irep)
      ninvar = mg_ndim
      maxwgt = 0d0
      if (first) then
c        gen_mom configures itself on its first call: let it, with a dummy point
         first = .false.
         mg_in_eval = .true.
         mg_r = 0.5d0
         wgt = 1d0
         mincfig = irep
         maxcfig = irep
         call gen_mom(idiag, mincfig, maxcfig, ninvar, wgt, x, p)
         mg_in_eval = .false.
      else
         call configure_integral(idiag, mincfig, maxcfig, ninvar,
     &        maxwgt)
      endif
      mincfig = irep
      maxcfig = irep
      diag_number = irep
      current = irep
      end

c     Channel ichan's phase space at r: the momenta p that gen_mom generates with the tree of the
c     channel's representative (p(0, 1) < 0: no point), its Jacobian wgt, and pout = p as the matrix
c     elements see it (ichan's permutation of identical particles); Bjorken x in XBK.
      subroutine madnis_phase_space(ichan, r, p, pout, wgt)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'madnis_glue.inc'
      integer ichan
      double precision r(*), p(0:3, max_particles+1), wgt
      double precision pout(0:3, nexternal)
      integer perms(nexternal, lmaxconfigs)
      include 'symperms.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer mincfig, maxcfig
      common/to_configs/mincfig, maxcfig
      integer rep(lmaxconfigs), jc(nexternal), i, ninvar
      double precision x(maxinvar)
      logical first
      save first, rep
      data first/.true./
      if (first) then
         first = .false.
         call madnis_representatives(rep)
      endif
      call madnis_configure(rep(ichan))
      do i = 1, mg_ndim
         mg_r(i) = r(i)
      enddo
      mg_in_eval = .true.
      wgt = 1d0
      ninvar = mg_ndim
      call gen_mom(rep(ichan), mincfig, maxcfig, ninvar, wgt, x, p)
      mg_in_eval = .false.
      if (p(0, 1) .ge. 0d0) call switchmom(p, pout,
     &     perms(1, mapconfig(ichan)), jc, nexternal)
      end

c     Back to the state of a fresh MadEvent run (flat grids, no Breit-Wigner poles): each
c     channel's set_peaks then shapes them for its own tree, as in its own G directory.
      subroutine madnis_reset_mapping()
      implicit none
      include 'genps.inc'
      double precision grid(2, ng, 0:maxinvar)
      common/data_grid/grid
      double precision spole(maxinvar), swidth(maxinvar), bwjac
      common/to_brietwigner/spole, swidth, bwjac
      integer i, j
      do j = 0, maxinvar
         do i = 1, ng
            grid(2, i, j) = xgmin + (xgmax - xgmin)*(i/dble(ng))
         enddo
      enddo
      do j = 1, maxinvar
         spole(j) = 0d0
         swidth(j) = 0d0
      enddo
      end

c     DSIGPROC for subprocess k, mirror m at the generated momenta p with channel ichan alone in
c     SYMCONF (so ICONFIG = ichan: its permutation, scale clustering and single-diagram weight), as
c     MadEvent calls it for one config (imode 0; 3: only the cuts and scales; 4: then only the
c     parton luminosity PD(0), no matrix element): AMP2/JAMP2 zeroed, cuts redone, /to_mirror/
c     set; afterwards the beam fractions and rapidity that DSIGPROC flips for the mirror are
c     restored. f in pb.
      subroutine madnis_dsigproc(p, k, m, ichan, imode, f)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'run.inc'
      include 'madnis_glue.inc'
      double precision p(0:3, max_particles+1), f
      integer k, m, ichan, imode
      integer confsub(maxsproc, lmaxconfigs)
      include 'config_subproc_map.inc'
      double precision amp2(maxamps), jamp2(0:maxflow)
      common/to_amps/amp2, jamp2
      logical cutsdone, cutspassed
      common/to_cutsdone/cutsdone, cutspassed
      double precision cm_rap
      logical set_cm_rap
      common/to_cm_rap/set_cm_rap, cm_rap
      integer mirror_now, sproc_now
      common/to_mirror/mirror_now, sproc_now
      integer i, symconf(0:lmaxconfigs)
      double precision cmrap0, xdum, dsigproc
      external dsigproc
      symconf(0) = 1
      symconf(1) = ichan
      cmrap0 = cm_rap
      do i = 1, maxamps
         amp2(i) = 0d0
      enddo
      jamp2(0) = maxflow
      do i = 1, maxflow
         jamp2(i) = 0d0
      enddo
c     as MadEvent's DSIG before a point's first subprocess (cuts.f reads CUTSPASSED, and leaves it
c     as it was where a cut fails)
      if (.not. mg_keep_cuts) then
         cutsdone = .false.
         cutspassed = .false.
      endif
      sproc_now = k
      mirror_now = m
      f = dsigproc(p, 1, k, m, symconf, confsub, 1d0, imode)
      if (m .eq. 2) then
         xdum = xbk(1)
         xbk(1) = xbk(2)
         xbk(2) = xdum
      endif
      cm_rap = cmrap0
      end

c     One point: fills the generated momenta p (gen_mom's order), the momenta pout that the
c     matrix elements see (config ichan's permutation of p), x1, x2, value (= f*J, pb),
c     alpha(nconf), status, the contribution fk of each (subprocess, mirror) and the channel isc
c     its scale clustered with (drawn, madnis_draw_scale, or ichan). With with_me = .false. only
c     the phase space: p, pout, x1, x2 and status 1 (failed) or 0.
      subroutine madnis_point(ichan, r, p, pout, x1, x2, value, alpha,
     &     status, fk, isc, with_me)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'run.inc'
      include 'madnis_glue.inc'
      integer ichan, status, isc(2, maxsproc)
      logical with_me
      double precision r(*), pout(0:3, nexternal), x1, x2, value
      double precision p(0:3, max_particles+1)
      double precision alpha(*), fk(2, maxsproc)
      logical mirrorprocs(maxsproc)
      include 'mirrorprocs.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      logical cutsdone, cutspassed
      common/to_cutsdone/cutsdone, cutspassed
      integer nconf
      integer i, j, k, m
      double precision wgt
      double precision f, ftot, norm
      logical first, passed, scale_dep, madnis_scale_dep, draw
      logical madnis_draw_scale, subdraw
      integer c0, ic, last, kc, mc, madnis_sub_channel
      double precision fac
      double precision u, acc, madnis_point_uniform
      double precision w0(lmaxconfigs), wi(lmaxconfigs)
      double precision pd0, pdi, as0, asi, q0(2), g0
      integer nqcd(maxsproc), cfirst(maxsproc)
      common/madnis_scale_draw/nqcd, cfirst
      double precision g
      common/strong/g
      save first, nconf, scale_dep, draw, subdraw
      data first/.true./
      if (first) then
         first = .false.
         nconf = mapconfig(0)
         scale_dep = madnis_scale_dep()
         draw = madnis_draw_scale()
         subdraw = mg_sub_draw .and.
     &        (maxsproc .gt. 1 .or. mirrorprocs(1))
      endif
      do k = 1, maxsproc
         fk(1, k) = 0d0
         fk(2, k) = 0d0
         isc(1, k) = ichan
         isc(2, k) = ichan
      enddo
      do i = 1, nconf
         alpha(i) = 0d0
      enddo
      value = 0d0
      call madnis_phase_space(ichan, r, p, pout, wgt)
      x1 = xbk(1)
      x2 = xbk(2)
      if (p(0, 1) .lt. 0d0) then
         status = 1
         do i = 1, nexternal
            do j = 0, 3
               pout(j, i) = 0d0
            enddo
         enddo
         goto 90
      endif
      if (.not. with_me) then
         status = 0
         return
      endif
      passed = .false.
      ftot = 0d0
      norm = 0d0
c     one subprocess and mirror drawn (kc, mc), its contribution times fac = 1/probability
      kc = 0
      mc = 0
      fac = 1d0
      if (subdraw) then
         call madnis_pick_subprocess(pout, r, ichan, draw, scale_dep,
     &        kc, mc, fac, passed)
         if (kc .eq. 0) goto 70
      endif
      if (draw) goto 60
      do k = 1, maxsproc
c        ichan's scales, or k skipped (madnis_sub_channel)
         if (madnis_sub_channel(k, ichan, draw, scale_dep) .eq. 0) cycle
         do m = 1, 2
            if (subdraw .and. (k .ne. kc .or. m .ne. mc)) cycle
            if (m .eq. 1 .or. mirrorprocs(k)) then
               call madnis_sub_weights(pout, k, m, ichan, f, w0)
               if (cutspassed) passed = .true.
               f = f*fac
               fk(m, k) = f
               if (f .ne. 0d0) then
                  do i = 1, nconf
                     alpha(i) = alpha(i) + f*w0(i)
                  enddo
                  ftot = ftot + f
                  norm = norm + f
               endif
            endif
         enddo
      enddo
      goto 70
c     Scale channels drawn (madnis_draw_scale): every subprocess and mirror counts, evaluated with
c     the scale of ichan where it has ichan's diagram, else of its first channel (c0); then one
c     channel i drawn with its weight w0(i) at this point and, if it is not c0, f moved to i's
c     scales (luminosity and alpha_s, no second matrix element). alpha: the weights w0 averaged.
 60   continue
      do k = 1, maxsproc
         c0 = madnis_sub_channel(k, ichan, draw, scale_dep)
         if (c0 .eq. 0) cycle
         do m = 1, 2
            if (subdraw .and. (k .ne. kc .or. m .ne. mc)) cycle
            if (m .eq. 1 .or. mirrorprocs(k)) then
               call madnis_sub_weights(pout, k, m, c0, f, w0)
               if (cutspassed) passed = .true.
               if (f .ne. 0d0) then
                  q0(1) = q2fact(1)
                  q0(2) = q2fact(2)
                  g0 = g
                  u = madnis_point_uniform(r, 2*k + m)
                  ic = 0
                  last = c0
                  acc = 0d0
                  do i = 1, nconf
                     acc = acc + w0(i)
                     if (w0(i) .gt. 0d0) then
                        if (ic .eq. 0 .and. u .lt. acc) ic = i
                        last = i
                     endif
                  enddo
c                 u beyond the rounded sum of the weights: the last channel
                  if (ic .eq. 0) ic = last
                  if (ic .ne. c0) then
c                    f at the drawn channel's scales: the same where its clustering gives the same
c                    scales, else moved by the luminosity and alpha_s^n (madnis_draw_scale); a
c                    second matrix element only where alpha_s differs and n is not known
                     call madnis_scales(pout, k, m, ic)
                     if (.not. cutspassed) then
                        f = 0d0
                     else if (q2fact(1) .ne. q0(1) .or. q2fact(2) .ne. q0(2)
     &                       .or. g .ne. g0) then
                        call madnis_luminosity(pout, k, m, c0, pd0, as0)
                        call madnis_luminosity(pout, k, m, ic, pdi, asi)
                        if (asi .eq. as0) then
                           f = f*(pdi/pd0)
                        else if (nqcd(k) .ge. 0) then
                           f = f*(pdi/pd0)*(asi/as0)**nqcd(k)
                        else
                           call madnis_sub_weights(pout, k, m, ic, f, wi)
                        endif
                     endif
                  endif
                  f = f*fac
                  isc(m, k) = ic
                  fk(m, k) = f
                  ftot = ftot + f
                  norm = norm + 1d0
                  do i = 1, nconf
                     alpha(i) = alpha(i) + w0(i)
                  enddo
               endif
            endif
         enddo
      enddo
c     alpha: the subprocesses' weights averaged with the contributions (generating channel's scale)
c     or equally (drawn: one function of the point)
 70   status = 2
      if (passed) status = 0
      value = ftot*wgt
      if (norm .ne. 0d0) then
         do i = 1, nconf
            alpha(i) = alpha(i)/norm
         enddo
         return
      endif
 90   do i = 1, nconf
         alpha(i) = 1d0/nconf
      enddo
      end

      integer(c_int) function madnis_evaluate(n, channel, r, momenta,
     &     x1, x2, value, alpha, status) bind(C, name='madnis_evaluate')
      use iso_c_binding
      implicit none
      integer(c_int), value :: n
      integer(c_int) :: channel(*), status(*)
      real(c_double) :: r(*), momenta(*), x1(*), x2(*), value(*)
      real(c_double) :: alpha(*)
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'madnis_glue.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer ipt, nconf, ist, k, ic, start(lmaxconfigs + 1)
      integer isc(2, maxsproc)
      integer, allocatable :: order(:)
      double precision fk(2, maxsproc), p(0:3, max_particles+1)
      nconf = mapconfig(0)
      do k = 1, nconf + 1
         start(k) = 0
      enddo
      do ipt = 1, n
         if (channel(ipt) .lt. 0 .or. channel(ipt) .ge. nconf) then
            madnis_evaluate = 1
            return
         endif
         start(channel(ipt) + 2) = start(channel(ipt) + 2) + 1
      enddo
c     points in order of channel (counting sort): one phase-space set-up per channel
      do k = 2, nconf + 1
         start(k) = start(k) + start(k - 1)
      enddo
      allocate(order(n))
      do ipt = 1, n
         ic = channel(ipt) + 1
         start(ic) = start(ic) + 1
         order(start(ic)) = ipt
      enddo
      do k = 1, n
         ipt = order(k)
         call madnis_point(channel(ipt) + 1, r((ipt-1)*mg_ndim + 1), p,
     &        momenta((ipt-1)*4*nexternal + 1), x1(ipt), x2(ipt),
     &        value(ipt), alpha((ipt-1)*nconf + 1), ist, fk, isc, .true.)
         status(ipt) = ist
      enddo
      deallocate(order)
      madnis_evaluate = 0
      end

      integer(c_int) function madnis_max_nup() bind(C,
     &     name='madnis_max_nup')
      use iso_c_binding
      implicit none
      include 'nexternal.inc'
      madnis_max_nup = 2*nexternal - 3
      end

      integer(c_int) function madnis_event_record(n, channel, r, u,
     &     seed, maxnup, nup, pdg, istup, mothers, color, momenta,
     &     helicity, scalup, aqcd, aqed, subproc)
     &     bind(C, name='madnis_event_record')
      use iso_c_binding
      implicit none
      integer(c_int), value :: n, seed, maxnup
      integer(c_int) :: channel(*), nup(*), pdg(maxnup, *)
      integer(c_int) :: istup(maxnup, *), mothers(2, maxnup, *)
      integer(c_int) :: color(2, maxnup, *), helicity(maxnup, *)
      integer(c_int) :: subproc(*)
      real(c_double) :: r(*), u(*), momenta(5, maxnup, *), scalup(*)
      real(c_double) :: aqcd(*), aqed(*)
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'run.inc'
      include 'madnis_glue.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer ipsel
      common/subproc/ipsel
      integer ipt, nconf, ist, k, m, i, kc, mc, useed, cseed
      integer madnis_sub_index
      integer confsub(maxsproc, lmaxconfigs)
      include 'config_subproc_map.inc'
      logical mirrorprocs(maxsproc)
      include 'mirrorprocs.inc'
      logical single, madnis_scale_dep, madnis_record_alone
      integer isc(2, maxsproc)
      real ran1, flow
      external ran1
      double precision fk(2, maxsproc), pt(0:3, nexternal), x1, x2
      double precision value, alpha(lmaxconfigs), tot, acc, f
      double precision p(0:3, max_particles+1)
      nconf = mapconfig(0)
      if (maxnup .lt. 2*nexternal - 3) then
         madnis_event_record = 2
         return
      endif
      do ipt = 1, n
         if (channel(ipt) .lt. 0 .or. channel(ipt) .ge. nconf) then
            madnis_event_record = 1
            return
         endif
      enddo
c     one subprocess, no mirror and no scale channel to draw: nothing to choose
      single = madnis_record_alone()
      do ipt = 1, n
         nup(ipt) = 0
         subproc(ipt) = -1
c        RANMAR (flavour, helicity) and ran1 (addmothers' colour flow) restart for every point from seed
c        and the fine bits of u(ipt), which the mirror choice (the coarse bits) does not see: a point's
c        record is the same whatever batch or worker it is in
         useed = int(mod(u(ipt)*1048576d0, 1d0)*1073741824d0)
         call madnis_ranmar_state(seed, useed)
         cseed = -1 - mod(mod(abs(seed), 259199) + mod(useed, 259199), 259199)
         flow = ran1(cseed)
         if (single) then
c           one subprocess, no mirror: nothing to choose, the recording evaluation below is the only one
            call madnis_point(channel(ipt) + 1, r((ipt-1)*mg_ndim + 1), p,
     &           pt, x1, x2, value, alpha, ist, fk, isc, .false.)
            if (ist .ne. 0 .or. (confsub(1, channel(ipt) + 1) .eq. 0
     &           .and. madnis_scale_dep())) cycle
            kc = 1
            mc = 1
            goto 50
         endif
         call madnis_point(channel(ipt) + 1, r((ipt-1)*mg_ndim + 1), p,
     &        pt, x1, x2, value, alpha, ist, fk, isc, .true.)
         tot = 0d0
         do k = 1, maxsproc
            tot = tot + abs(fk(1, k)) + abs(fk(2, k))
         enddo
         if (tot .eq. 0d0) cycle
c        choose the subprocess and mirror with probability proportional to its contribution
         kc = 0
         acc = 0d0
         do k = 1, maxsproc
            do m = 1, 2
               if (fk(m, k) .ne. 0d0 .and. kc .eq. 0) then
                  acc = acc + abs(fk(m, k))
                  if (u(ipt)*tot .lt. acc) then
                     kc = k
                     mc = m
                  endif
               endif
            enddo
         enddo
         if (kc .eq. 0) then
            do k = 1, maxsproc
               do m = 1, 2
                  if (fk(m, k) .ne. 0d0) then
                     kc = k
                     mc = m
                  endif
               enddo
            enddo
         endif
c        rerun that subprocess with MadEvent's event writer switched on (no event where it gives 0),
c        its scale clustered with the channel of its evaluation (isc)
 50      mg_rec_npart = 0
         mg_record = .true.
         call madnis_momenta_for(pt, isc(mc, kc), p)
         call madnis_dsigproc(p, kc, mc, isc(mc, kc), 0, f)
         mg_record = .false.
         if (mg_rec_npart .eq. 0) cycle
         nup(ipt) = mg_rec_npart
         subproc(ipt) = madnis_sub_index(kc, ipsel, mc) - 1
         do i = 1, mg_rec_npart
            pdg(i, ipt) = mg_rec_ic(1, i)
            mothers(1, i, ipt) = mg_rec_ic(2, i)
            mothers(2, i, ipt) = mg_rec_ic(3, i)
            color(1, i, ipt) = mg_rec_ic(4, i)
            color(2, i, ipt) = mg_rec_ic(5, i)
            istup(i, ipt) = mg_rec_ic(6, i)
            helicity(i, ipt) = mg_rec_ic(7, i)
            momenta(1, i, ipt) = mg_rec_p(1, i)
            momenta(2, i, ipt) = mg_rec_p(2, i)
            momenta(3, i, ipt) = mg_rec_p(3, i)
            momenta(4, i, ipt) = mg_rec_p(0, i)
            momenta(5, i, ipt) = mg_rec_p(4, i)
         enddo
         scalup(ipt) = mg_rec_scale
         aqcd(ipt) = mg_rec_aqcd
         aqed(ipt) = mg_rec_aqed
      enddo
      madnis_event_record = 0
      end

c     RANMAR's state for one event record: its 97 lagged-Fibonacci entries (24-bit fractions) from a
c     Park-Miller minimal-standard generator seeded by the run's seed and the point's useed, and the
c     carry as MadEvent's rmarin sets it. Why not rmarin: Marsaglia-Zaman's initialisation takes 2328
c     steps, 25 us of a 160 us record (and prints a line per call).
      subroutine madnis_ranmar_state(seed, useed)
      implicit none
      integer seed, useed, ii, iranmr, jranmr
      integer*8 x
      double precision ranu(97), ranc, rancd, rancm
      common/ raset1 / ranu, ranc, rancd, rancm
      common/ raset2 / iranmr, jranmr
      save /raset1/, /raset2/
      x = 1_8 + mod(mod(int(abs(seed), 8), 2147483646_8)*1073741824_8
     &     + int(useed, 8), 2147483646_8)
      do ii = 1, 8
         x = mod(48271_8*x, 2147483647_8)
      enddo
      do ii = 1, 97
         x = mod(48271_8*x, 2147483647_8)
         ranu(ii) = dble(x/128_8)/16777216d0
      enddo
      ranc = 362436d0/16777216d0
      rancd = 7654321d0/16777216d0
      rancm = 16777213d0/16777216d0
      iranmr = 97
      jranmr = 33
      end
