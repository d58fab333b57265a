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
c (The originals are made weak symbols by build.py.) The integrand is the deterministic
c sum over subprocesses and mirrors; alpha follows SMATRIX's single-diagram enhancement.
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
      logical madnis_scale_dep
      ndim = madnis_ndim()
      nchan = mapconfig(0)
      nexter = nexternal
      ninit = nincoming
      nsub = madnis_nsub()
      ebeams(1) = ebeam(1)
      ebeams(2) = ebeam(2)
      scale_dep = 0
      if (madnis_scale_dep()) scale_dep = 1
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
c     MadEvent calls it for one config: AMP2/JAMP2 zeroed, cuts redone, /to_mirror/ set; afterwards
c     the beam fractions and rapidity that DSIGPROC flips for the mirror are restored. f in pb.
      subroutine madnis_dsigproc(p, k, m, ichan, f)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'run.inc'
      double precision p(0:3, max_particles+1), f
      integer k, m, ichan
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
      cutsdone = .false.
      sproc_now = k
      mirror_now = m
      f = dsigproc(p, 1, k, m, symconf, confsub, 1d0, 0)
      if (m .eq. 2) then
         xdum = xbk(1)
         xbk(1) = xbk(2)
         xbk(2) = xdum
      endif
      cm_rap = cmrap0
      end

c     One point: fills the generated momenta p (gen_mom's order), the momenta pout that the
c     matrix elements see (config ichan's permutation of p), x1, x2, value (= f*J, pb),
c     alpha(nconf), status, and the contribution fk of each (subprocess, mirror). With
c     with_me = .false. only the phase space: p, pout, x1, x2 and status 1 (failed) or 0.
      subroutine madnis_point(ichan, r, p, pout, x1, x2, value, alpha,
     &     status, fk, with_me)
      implicit none
      include 'genps.inc'
      include 'nexternal.inc'
      include 'maxconfigs.inc'
      include 'maxamps.inc'
      include 'run.inc'
      include 'madnis_glue.inc'
      integer ichan, status
      logical with_me
      double precision r(*), pout(0:3, nexternal), x1, x2, value
      double precision p(0:3, max_particles+1)
      double precision alpha(*), fk(2, maxsproc)
      integer confsub(maxsproc, lmaxconfigs)
      include 'config_subproc_map.inc'
      logical mirrorprocs(maxsproc)
      include 'mirrorprocs.inc'
      integer perms(nexternal, lmaxconfigs)
      include 'symperms.inc'
      integer mapconfig(0:lmaxconfigs), this_config
      common/to_mconfigs/mapconfig, this_config
      integer mincfig, maxcfig
      common/to_configs/mincfig, maxcfig
      double precision amp2(maxamps), jamp2(0:maxflow)
      common/to_amps/amp2, jamp2
      logical cutsdone, cutspassed
      common/to_cutsdone/cutsdone, cutspassed
      integer rep(lmaxconfigs), nconf
      integer i, j, k, m, jc(nexternal), ninvar
      double precision x(maxinvar), wgt
      double precision p1(0:3, nexternal), f, ftot, w(lmaxconfigs)
      double precision xtot
      double precision get_channel_cut
      external get_channel_cut
      logical first, passed, scale_dep, madnis_scale_dep
      save first, rep, nconf, scale_dep
      data first/.true./
      if (first) then
         first = .false.
         call madnis_representatives(rep)
         nconf = mapconfig(0)
         scale_dep = madnis_scale_dep()
      endif
      do k = 1, maxsproc
         fk(1, k) = 0d0
         fk(2, k) = 0d0
      enddo
      do i = 1, nconf
         alpha(i) = 0d0
      enddo
      value = 0d0
      call madnis_configure(rep(ichan))
      do i = 1, mg_ndim
         mg_r(i) = r(i)
      enddo
      mg_in_eval = .true.
      wgt = 1d0
      ninvar = mg_ndim
      call gen_mom(rep(ichan), mincfig, maxcfig, ninvar, wgt, x, p)
      mg_in_eval = .false.
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
      call switchmom(p, pout, perms(1, mapconfig(ichan)), jc, nexternal)
      if (.not. with_me) then
         status = 0
         return
      endif
      passed = .false.
      ftot = 0d0
      do k = 1, maxsproc
c        As MadEvent's DSIG: a subprocess without the channel's diagram (CONFSUB = 0, e.g. the
c        t-channel quark of u u~ > w+ w- vs d d~ > w+ w-) adds nothing to this channel (its alpha is
c        0) and, with a channel-dependent scale, cannot be clustered with the channel's diagram:
c        skipped then. With a channel-independent scale it is evaluated, so that alpha is the same
c        function of the point in every channel (trained channel weights need that).
         if (confsub(k, ichan) .eq. 0 .and. scale_dep) cycle
         do m = 1, 2
            if (m .eq. 1 .or. mirrorprocs(k)) then
               call madnis_dsigproc(p, k, m, ichan, f)
               if (cutspassed) passed = .true.
               fk(m, k) = f
               if (f .ne. 0d0) then
c                 SMATRIX's single-diagram-enhancement weights of this subprocess
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
                        alpha(i) = alpha(i) + f*w(i)/xtot
                     else
                        alpha(i) = alpha(i) + f/nconf
                     endif
                  enddo
                  ftot = ftot + f
               endif
            endif
         enddo
      enddo
      status = 2
      if (passed) status = 0
      value = ftot*wgt
      if (ftot .ne. 0d0) then
         do i = 1, nconf
            alpha(i) = alpha(i)/ftot
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
     &        value(ipt), alpha((ipt-1)*nconf + 1), ist, fk, .true.)
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
      logical single, madnis_scale_dep
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
      single = maxsproc .eq. 1 .and. .not. mirrorprocs(1)
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
     &           pt, x1, x2, value, alpha, ist, fk, .false.)
            if (ist .ne. 0 .or. (confsub(1, channel(ipt) + 1) .eq. 0
     &           .and. madnis_scale_dep())) cycle
            kc = 1
            mc = 1
            goto 50
         endif
         call madnis_point(channel(ipt) + 1, r((ipt-1)*mg_ndim + 1), p,
     &        pt, x1, x2, value, alpha, ist, fk, .true.)
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
c        rerun that subprocess with MadEvent's event writer switched on (no event where it gives 0)
 50      mg_rec_npart = 0
         mg_record = .true.
         call madnis_dsigproc(p, kc, mc, channel(ipt) + 1, f)
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
