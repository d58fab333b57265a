! toy_bridge.f90: an analytic two-channel integrand behind the MadNIS bridge C ABI
! (fortran_bridge/madnis_bridge.h), so the loader, batching, sharding and fault handling are
! tested without MG5aMC.
!
! f(x, y) = 1.5 (x^2 + (1-x)^2) for y < 0.9 (the "cut"), 0 otherwise; exact integral 0.9.
! Channel 0: x = sqrt(r1), channel 1: x = 1 - sqrt(r1); y = r2. alpha = (x, 1-x) is the
! channel densities' share, so sum_c <alpha_c f J_c> = 0.9. Momenta: massless u u~ > e+ e-
! at sqrt(s) = 100 GeV with cos(theta) = 2x - 1, phi = 2 pi y.
! Faults on request: r1 < 0 -> Fortran STOP, r1 > 1 -> segmentation fault.
module toy_bridge
  use iso_c_binding
  implicit none
  integer, parameter :: ndim = 2, nchan = 2, nexternal = 4
  real(c_double), parameter :: ecm = 100d0, pi = 3.14159265358979323846d0
contains

  integer(c_int) function madnis_init(rundir, seed) bind(C, name='madnis_init')
    character(kind=c_char), dimension(*) :: rundir
    integer(c_int), value :: seed
    madnis_init = 0
  end function

  integer(c_int) function madnis_record_evaluations() bind(C, name='madnis_record_evaluations')
    madnis_record_evaluations = 1
  end function

  subroutine madnis_allow_scale_draw(on) bind(C, name='madnis_allow_scale_draw')
    integer(c_int), value :: on  ! the toy's scale does not depend on the channel: nothing to draw
  end subroutine

  subroutine madnis_allow_subprocess_draw(on) bind(C, name='madnis_allow_subprocess_draw')
    integer(c_int), value :: on  ! one subprocess: nothing to draw
  end subroutine

  subroutine madnis_info(nd, nc, ne, ni, ns, ebeams, scale_dep) bind(C, name='madnis_info')
    integer(c_int) :: nd, nc, ne, ni, ns, scale_dep
    real(c_double) :: ebeams(2)
    nd = ndim; nc = nchan; ne = nexternal; ni = 2; ns = 1; scale_dep = 0
    ebeams = ecm / 2
  end subroutine

  subroutine madnis_channels(config, group) bind(C, name='madnis_channels')
    integer(c_int) :: config(nchan), group(nchan)
    config = [1, 2]
    group = [0, 1]
  end subroutine

  subroutine madnis_subprocesses(pdg, mirror) bind(C, name='madnis_subprocesses')
    integer(c_int) :: pdg(nexternal, 1), mirror(1)
    pdg(:, 1) = [2, -2, -11, 11]
    mirror(1) = 0
  end subroutine

  subroutine point(ichan, r, p, value, alpha, status)
    integer(c_int) :: ichan, status
    real(c_double) :: r(ndim), p(0:3, nexternal), value, alpha(nchan)
    real(c_double) :: x, jac, cth, sth, phi, e
    integer, pointer :: null_int
    if (r(1) < 0) stop 'toy_bridge: r1 < 0 requested a STOP'
    if (r(1) > 1) then
      call c_f_pointer(c_null_ptr, null_int)
      null_int = 1
    end if
    if (ichan == 0) then
      x = sqrt(r(1)); jac = 1 / (2 * x)
    else
      x = 1 - sqrt(r(1)); jac = 1 / (2 * (1 - x))
    end if
    e = ecm / 2; cth = 2 * x - 1; sth = sqrt(max(0d0, 1 - cth**2)); phi = 2 * pi * r(2)
    p(:, 1) = [e, 0d0, 0d0, e]
    p(:, 2) = [e, 0d0, 0d0, -e]
    p(:, 3) = [e, e * sth * cos(phi), e * sth * sin(phi), e * cth]
    p(:, 4) = [e, -p(1, 3), -p(2, 3), -p(3, 3)]
    if (r(2) < 0.9d0) then
      value = 1.5d0 * (x**2 + (1 - x)**2) * jac
      alpha = [x, 1 - x]
      status = 0
    else
      value = 0; alpha = 0.5d0; status = 2
    end if
  end subroutine

  integer(c_int) function madnis_evaluate(n, channel, r, momenta, x1, x2, value, alpha, status) &
      bind(C, name='madnis_evaluate')
    integer(c_int), value :: n
    integer(c_int) :: channel(n), status(n)
    real(c_double) :: r(ndim, n), momenta(0:3, nexternal, n), x1(n), x2(n), value(n), alpha(nchan, n)
    integer :: i
    if (any(channel < 0 .or. channel >= nchan)) then
      madnis_evaluate = 1
      return
    end if
    do i = 1, n
      call point(channel(i), r(:, i), momenta(:, :, i), value(i), alpha(:, i), status(i))
    end do
    x1 = 1; x2 = 1
    madnis_evaluate = 0
  end function

  integer(c_int) function madnis_max_nup() bind(C, name='madnis_max_nup')
    madnis_max_nup = 5
  end function

  integer(c_int) function madnis_event_record(n, channel, r, u, seed, maxnup, nup, pdg, istup, &
      mothers, color, momenta, helicity, scale, aqcd, aqed, subproc) bind(C, name='madnis_event_record')
    integer(c_int), value :: n, seed, maxnup
    integer(c_int) :: channel(n), nup(n), pdg(maxnup, n), istup(maxnup, n), mothers(2, maxnup, n)
    integer(c_int) :: color(2, maxnup, n), helicity(maxnup, n), subproc(n)
    real(c_double) :: r(ndim, n), u(n), momenta(5, maxnup, n), scale(n), aqcd(n), aqed(n)
    real(c_double) :: p(0:3, nexternal), value, alpha(nchan)
    integer(c_int) :: i, status
    do i = 1, n
      call point(channel(i), r(:, i), p, value, alpha, status)
      nup(i) = 0; subproc(i) = -1
      if (value == 0) cycle
      nup(i) = 4; subproc(i) = 0
      pdg(1:4, i) = [2, -2, -11, 11]
      istup(1:4, i) = [-1, -1, 1, 1]
      mothers(:, 1:4, i) = reshape([0, 0, 0, 0, 1, 2, 1, 2], [2, 4])
      color(:, 1:4, i) = reshape([501, 0, 0, 501, 0, 0, 0, 0], [2, 4])
      helicity(1:4, i) = [1, -1, 1, -1]
      momenta(1:3, 1:4, i) = p(1:3, :)
      momenta(4, 1:4, i) = p(0, :)
      momenta(5, 1:4, i) = 0
      scale(i) = ecm; aqcd(i) = 0.118d0; aqed(i) = 1 / 132.5d0
    end do
    madnis_event_record = 0
  end function
end module
