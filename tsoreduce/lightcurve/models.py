"""Astrophysical light-curve models (batman) and the full model = astrophysics x systematics.

Normalised to the stellar flux:

* ``transit``:    F = T(t)                     (batman primary transit, limb-darkened star)
* ``eclipse``:    F = 1 + fp * E(t)            (batman secondary eclipse; E = visible fraction of the planet)
* ``phasecurve``: F = T(t) + Fp(t) * E(t), with the planet's phase variation
  Fp = fp + A1 [cos(theta + d1) - cos d1] (+ A2 [cos(2 theta + d2) - cos d2]),
  theta = 2 pi (t - t_secondary) / P, so that Fp(t_secondary) = fp is the eclipse depth and a positive
  offset d (degrees) puts the maximum before the eclipse (an eastward hotspot).  The planet is hidden
  during the eclipse through E (SPARTA ``get_planet_flux``; Eureka! ``sinusoid_pc``, Bell et al. 2022).

Parameters (names used in the YAML): t0 (BMJD_TDB, d), per (d), rp_rs, a_rs, inc (deg), ecc, w (deg),
fp, pc_amp1, pc_offset1 (deg), pc_amp2, pc_offset2, limb darkening q1, q2 (Kipping 2013, MNRAS 435,
2152: u1 = 2 sqrt(q1) q2, u2 = sqrt(q1)(1 - 2 q2)) or u1 ... u4, then the systematics
(:mod:`.systematics`) and the noise parameter (``err_mult`` or ``jitter_ppm``).

batman model objects are built once for a fixed time array and reused for every evaluation
(nthreads=1: parallelism over channels is by processes, :mod:`tsoreduce.lightcurve.stage`).
When the orbit is fixed
(spectroscopic channels) :meth:`LightCurveModel.freeze_orbit` restricts the batman calls to the
integrations that can be in transit / eclipse, which is exact and ~2x faster.
"""

from __future__ import annotations

import logging

import batman
import numpy as np

from ..errors import ConfigError
from .systematics import Systematics

__all__ = ["MODEL_KINDS", "LD_LAWS", "LightCurveModel", "ld_coefficients", "kipping_to_u", "u_to_kipping"]

log = logging.getLogger(__name__)

MODEL_KINDS = ("transit", "eclipse", "phasecurve")
LD_LAWS = {"uniform": 0, "linear": 1, "quadratic": 2, "squareroot": 2, "logarithmic": 2,
           "exponential": 2, "power2": 2, "nonlinear": 4}
NOISE_KINDS = ("none", "err_mult", "jitter")
_DUMMY2 = np.zeros((1, 1))  # placeholder for the kernels' unused 2-D inputs (never written)


def kipping_to_u(q1, q2):
    """Kipping (2013, MNRAS 435, 2152) q1, q2 in [0, 1] -> quadratic u1, u2.

    Parameters
    ----------
    q1, q2 : float or array_like
        Kipping coefficients (broadcast).

    Returns
    -------
    tuple
        (u1, u2).
    """
    sq = np.sqrt(q1)
    return 2.0 * sq * q2, sq * (1.0 - 2.0 * q2)


def u_to_kipping(u1, u2):
    """Quadratic u1, u2 -> Kipping (2013) q1, q2.

    Parameters
    ----------
    u1, u2 : float
        Quadratic coefficients.

    Returns
    -------
    tuple of float
        (q1, q2).
    """
    q1 = (u1 + u2) ** 2
    q2 = u1 / (2.0 * (u1 + u2)) if (u1 + u2) != 0 else 0.0
    return q1, q2


def ld_coefficients(law: str, parametrisation: str) -> list:
    """The limb-darkening parameter names of a law.

    Parameters
    ----------
    law : str
        batman law (:data:`LD_LAWS`).
    parametrisation : str
        'kipping' (quadratic only) or 'u'.

    Returns
    -------
    list of str
        ['q1', 'q2'] or ['u1', ...].

    Raises
    ------
    ConfigError
        Unknown law or parametrisation, or kipping with a law other than quadratic.
    """
    if law not in LD_LAWS:
        raise ConfigError(f"stage4.limb_darkening.law: {law!r} is not one of {sorted(LD_LAWS)}")
    n = LD_LAWS[law]
    if parametrisation == "kipping":
        if law != "quadratic":
            raise ConfigError("stage4.limb_darkening.parametrisation: 'kipping' (q1, q2) is defined for the "
                              f"quadratic law only, not {law!r}; use parametrisation: u")
        return ["q1", "q2"]
    if parametrisation != "u":
        raise ConfigError(f"stage4.limb_darkening.parametrisation: {parametrisation!r} is not 'kipping' or 'u'")
    return [f"u{k}" for k in range(1, n + 1)]


class LightCurveModel:
    """Full light-curve model for a fixed time array: ``model.evaluate(values)``.

    ``names`` lists every parameter in order.  ``evaluate`` accepts a dict name -> value, a vector
    ``(nparams,)`` or a matrix ``(nw, nparams)`` and returns ``(nt,)`` or ``(nw, nt)``.

    Parameters
    ----------
    time : array_like, shape (nt,)
        BMJD_TDB (d) of the fitted integrations.
    kind : str
        'transit' | 'eclipse' | 'phasecurve'.
    ld_law : str
        batman limb-darkening law.
    ld_parametrisation : str
        'kipping' (quadratic only) or 'u'.
    pc_order : int
        1 or 2, harmonics of the phase variation (phasecurve only).
    ramp, poly_order, regressors, t_start, t_ref
        See :class:`~tsoreduce.lightcurve.systematics.Systematics`.
    noise : str
        'none' | 'err_mult' | 'jitter' -- error inflation parameter of the likelihood.
    supersample_factor : int
        >= 1.
    exp_time : float, optional
        Exposure time in days (required when ``supersample_factor`` > 1).

    Raises
    ------
    ConfigError
        Unknown kind, noise, phase-curve order or limb-darkening law, or supersampling without exp_time.
    """

    def __init__(self, time, kind="transit", *, ld_law="quadratic", ld_parametrisation="kipping", pc_order=1,
                 ramp="single", poly_order=1, regressors=None, t_start=None, t_ref=None, noise="err_mult",
                 supersample_factor=1, exp_time=None):
        self.time = np.asarray(time, float)
        if kind not in MODEL_KINDS:
            raise ConfigError(f"stage4.model: {kind!r} is not one of {MODEL_KINDS}")
        if noise not in NOISE_KINDS:
            raise ConfigError(f"stage4.systematics.noise: {noise!r} is not one of {NOISE_KINDS}")
        if pc_order not in (1, 2):
            raise ConfigError(f"stage4.phase_curve_order: {pc_order!r} must be 1 or 2")
        self.kind, self.noise, self.pc_order = kind, noise, pc_order
        self.ld_law, self.ld_parametrisation = ld_law, ld_parametrisation
        self.ld_names = ld_coefficients(ld_law, ld_parametrisation) if kind != "eclipse" else []
        self.supersample_factor = int(supersample_factor)
        if self.supersample_factor > 1 and not (exp_time and exp_time > 0):
            raise ConfigError("stage4.exposure_time: needed (> 0) when supersample_factor > 1")
        self.exp_time = float(exp_time) if exp_time else 0.0
        self.systematics = Systematics(self.time, ramp=ramp, poly_order=poly_order, regressors=regressors,
                                       t_start=t_start, t_ref=t_ref)
        astro = ["t0", "per", "rp_rs", "a_rs", "inc", "ecc", "w"]
        if kind in ("eclipse", "phasecurve"):
            astro.append("fp")
        if kind == "phasecurve":
            astro += ["pc_amp1", "pc_offset1"] + (["pc_amp2", "pc_offset2"] if pc_order == 2 else [])
        noise_names = {"none": [], "err_mult": ["err_mult"], "jitter": ["jitter_ppm"]}[noise]
        self.names = astro + self.ld_names + self.systematics.names + noise_names
        self.index = {n: i for i, n in enumerate(self.names)}
        self._window_tr = None  # indices (into time) where batman is evaluated; None = all points
        self._window_ec = None
        self._tp = self._tm = self._ep = self._em = None

    # ------------------------------------------------------------------ batman plumbing
    def _params(self, v):
        p = batman.TransitParams()
        p.t0, p.per, p.rp, p.a = v["t0"], v["per"], v["rp_rs"], v["a_rs"]
        p.inc, p.ecc, p.w = v["inc"], v["ecc"], v["w"]
        p.limb_dark = self.ld_law if self.kind != "eclipse" else "uniform"
        p.u = self._u_from(v)
        p.fp = 1.0
        p.t_secondary = v["t0"] + 0.5 * v["per"]
        return p

    def _u_from(self, v):
        if self.kind == "eclipse" or self.ld_law == "uniform":
            return []
        if self.ld_parametrisation == "kipping":
            u1, u2 = kipping_to_u(v["q1"], v["q2"])
            return [float(u1), float(u2)]
        return [float(v[n]) for n in self.ld_names]

    def _build(self, v):
        """Create the batman models once, for the windowed (or full) time arrays."""
        kw = dict(supersample_factor=self.supersample_factor, exp_time=self.exp_time, nthreads=1)
        if self.kind in ("transit", "phasecurve"):
            t = self.time if self._window_tr is None else self.time[self._window_tr]
            self._tp = self._params(v)
            self._tm = batman.TransitModel(self._tp, t, **kw) if t.size else None
        if self.kind in ("eclipse", "phasecurve"):
            t = self.time if self._window_ec is None else self.time[self._window_ec]
            self._ep = self._params(v)
            self._ep.t_secondary = self._t_secondary(v)
            self._em = batman.TransitModel(self._ep, t, transittype="secondary", **kw) if t.size else None
            self._ec_orbit = None

    @staticmethod
    def _t_secondary(v):
        """Mid-eclipse time from t0 through Kepler's equation (true -> eccentric -> mean anomaly)."""
        if v["ecc"] == 0:
            return v["t0"] + 0.5 * v["per"]
        e, w = v["ecc"], np.deg2rad(v["w"])

        def mean_anomaly(f):
            E = 2.0 * np.arctan(np.sqrt((1 - e) / (1 + e)) * np.tan(f / 2.0))
            return E - e * np.sin(E)

        # conjunctions: true anomaly pi/2 - w (transit) and 3 pi/2 - w (eclipse)
        dm = (mean_anomaly(1.5 * np.pi - w) - mean_anomaly(0.5 * np.pi - w)) % (2 * np.pi)
        return v["t0"] + v["per"] * dm / (2 * np.pi)

    def freeze_orbit(self, values, rp_max: float):
        """Declare the orbit fixed at ``values`` and evaluate batman only where the planet can overlap the star.

        ``rp_max`` is the largest Rp/Rs the fit may reach (upper prior bound).  Exact: outside the
        window the transit is 1 and the planet fully visible.
        """
        v = self._as_dict(values)
        kw = dict(supersample_factor=self.supersample_factor, exp_time=self.exp_time, nthreads=1)
        lim = 1.0 + 1.02 * rp_max + 1e-3
        ns = max(self.supersample_factor, 1)
        if self.kind in ("transit", "phasecurve"):
            m = batman.TransitModel(self._params(v), self.time, **kw)
            self._window_tr = np.flatnonzero(np.any(m.ds.reshape(-1, ns) < lim, axis=1))
        if self.kind in ("eclipse", "phasecurve"):
            p = self._params(v)
            p.t_secondary = self._t_secondary(v)
            m = batman.TransitModel(p, self.time, transittype="secondary", **kw)
            self._window_ec = np.flatnonzero(np.any(m.ds.reshape(-1, ns) < lim, axis=1))
        self._orbit_frozen = {k: v[k] for k in ("t0", "per", "a_rs", "inc", "ecc", "w")}
        self._tm = self._em = None
        log.debug("orbit frozen: batman on %s transit / %s eclipse points of %d",
                  None if self._window_tr is None else self._window_tr.size,
                  None if self._window_ec is None else self._window_ec.size, self.time.size)

    # ------------------------------------------------------------------ evaluation
    def _as_dict(self, values):
        if isinstance(values, dict):
            missing = [n for n in self.names if n not in values]
            if missing:
                raise ConfigError(f"LightCurveModel.evaluate: missing parameter(s) {missing}")
            return {n: float(values[n]) for n in self.names}
        return dict(zip(self.names, np.asarray(values, float)))

    def _matrix(self, values):
        if isinstance(values, dict):
            return np.array([self._as_dict(values)[n] for n in self.names])[None, :], True
        P = np.asarray(values, float)
        if P.ndim == 1:
            return P[None, :], True
        return P, False

    def astro(self, values) -> np.ndarray:
        """Astrophysical flux (normalised to the star) ``(nt,)`` or ``(nw, nt)``."""
        P, one = self._matrix(values)
        out = np.empty((P.shape[0], self.time.size))
        ix = self.index
        if self._tm is None and self._em is None:
            self._build(dict(zip(self.names, P[0])))
        if self.kind in ("transit", "phasecurve"):
            for k in range(P.shape[0]):
                out[k] = self._transit(P[k], ix)
        else:
            out[:] = 1.0
        if self.kind in ("eclipse", "phasecurve"):
            vis = np.empty_like(out)
            for k in range(P.shape[0]):
                vis[k] = self._eclipse(P[k], ix)
            planet = P[:, ix["fp"]][:, None] if self.kind == "eclipse" else self._planet_flux(P)
            out += planet * vis
        return out[0] if one else out

    def _orbit_tuple(self, row, ix):
        return (row[ix["t0"]], row[ix["per"]], row[ix["a_rs"]], row[ix["inc"]], row[ix["ecc"]], row[ix["w"]])

    def _transit(self, row, ix):
        out = np.ones(self.time.size)
        if self._tm is None:
            return out
        p = self._tp
        p.t0, p.per, p.a, p.inc, p.ecc, p.w = self._orbit_tuple(row, ix)
        p.rp = row[ix["rp_rs"]]
        p.t_secondary = self._tm.t_secondary  # ignored by a primary model; keeps batman's cached ds valid
        p.u = self._u_from({n: row[ix[n]] for n in self.ld_names})
        lc = self._tm.light_curve(p)
        if self._window_tr is None:
            return lc
        out[self._window_tr] = lc
        return out

    def _eclipse(self, row, ix):
        """Visible fraction of the planet disc ``(nt,)`` (1 out of eclipse, 0 in full eclipse)."""
        out = np.ones(self.time.size)
        if self._em is None:
            return out
        lc = self._eclipse_lc(row, ix)
        if self._window_ec is None:
            return lc
        out[self._window_ec] = lc
        return out

    def _eclipse_lc(self, row, ix):
        """Visible fraction on the batman eclipse model's own times (the window, or all points)."""
        p = self._ep
        orbit = self._orbit_tuple(row, ix)
        if orbit != getattr(self, "_ec_orbit", None):
            # batman recomputes the sky separation only when the orbit changes; it derives t0 from
            # t_secondary for a secondary model, so hand it exactly what it stored last time otherwise
            v = dict(zip(("t0", "per", "a_rs", "inc", "ecc", "w"), orbit))
            p.t0, p.per, p.a, p.inc, p.ecc, p.w = orbit
            p.t_secondary = self._t_secondary(v)
            self._ec_orbit = orbit
        else:
            p.t0, p.per, p.a, p.inc = self._em.t0, self._em.per, self._em.a, self._em.inc
            p.ecc, p.w, p.t_secondary = self._em.ecc, self._em.w, self._em.t_secondary
        p.rp = row[ix["rp_rs"]]
        p.fp = 1.0
        return self._em.light_curve(p) - 1.0

    def _planet_flux(self, P):
        """Phase variation Fp(t) ``(nw, nt)`` of the planet (relative to the star), vectorised."""
        ix = self.index
        col = lambda n: P[:, ix[n]][:, None]  # noqa: E731
        same_orbit = all(np.all(P[:, ix[k]] == P[0, ix[k]]) for k in ("t0", "per", "ecc", "w"))
        if same_orbit:
            # one orbit for all walkers (spectroscopic channels): reuse cos/sin of the phase angle
            key = tuple(P[0, ix[k]] for k in ("t0", "per", "ecc", "w"))
            if getattr(self, "_trig_key", None) != key:
                th = self._theta(P[:1])[0]
                self._trig = (np.cos(th), np.sin(th), np.cos(2 * th), np.sin(2 * th))
                self._trig_key = key
            c1, s1, c2, s2 = self._trig
        else:
            th = self._theta(P)
            c1, s1 = np.cos(th), np.sin(th)
            if self.pc_order == 2:
                c2, s2 = np.cos(2 * th), np.sin(2 * th)
        # A [cos(n theta + d) - cos d] = A cos d (cos n theta - 1) - A sin d sin n theta
        d1 = np.deg2rad(col("pc_offset1"))
        a1 = col("pc_amp1")
        fp = col("fp") + (a1 * np.cos(d1)) * (c1 - 1.0) - (a1 * np.sin(d1)) * s1
        if self.pc_order == 2:
            d2 = np.deg2rad(col("pc_offset2"))
            a2 = col("pc_amp2")
            fp = fp + (a2 * np.cos(d2)) * (c2 - 1.0) - (a2 * np.sin(d2)) * s2
        return fp

    def _theta(self, P):
        """Orbital phase angle from mid-eclipse, ``(nw, nt)`` radians."""
        ix = self.index
        if np.all(P[:, ix["ecc"]] == 0):
            tsec = P[:, ix["t0"]] + 0.5 * P[:, ix["per"]]
        else:
            keys = ("t0", "per", "ecc", "w")
            tsec = np.array([self._t_secondary({k: r[ix[k]] for k in keys}) for r in P])
        return 2.0 * np.pi * (self.time[None, :] - tsec[:, None]) / P[:, ix["per"]][:, None]

    @property
    def _orbit_cols(self):
        """Column indices of t0, per, ecc, w (the phase angle's orbit) in a parameter matrix."""
        cols = self.__dict__.get("_orbit_cols_cache")
        if cols is None:
            cols = self.__dict__["_orbit_cols_cache"] = [self.index[k] for k in ("t0", "per", "ecc", "w")]
        return cols

    def _trig_matrix(self, row):
        """cos/sin of theta and 2 theta for one orbit, a contiguous ``(4, nt)`` array cached per orbit."""
        key = tuple(row[self._orbit_cols])
        if getattr(self, "_trig_mat_key", None) != key:
            if getattr(self, "_trig_key", None) != key:
                th = self._theta(row[None, :])[0]
                self._trig = (np.cos(th), np.sin(th), np.cos(2 * th), np.sin(2 * th))
                self._trig_key = key
            self._trig_mat = np.array(self._trig)  # (4, nt) C-contiguous float64
            self._trig_mat_key = key
        return self._trig_mat

    def systematics_model(self, values) -> np.ndarray:
        """Multiplicative systematics S(t) ``(nt,)`` or ``(nw, nt)``."""
        P, one = self._matrix(values)
        s = self.systematics.evaluate(P, self.index)
        return s[0] if one else s

    def evaluate(self, values) -> np.ndarray:
        """Full model astro x systematics, ``(nt,)`` for one parameter set or ``(nw, nt)`` for a matrix."""
        P, one = self._matrix(values)
        m = self.astro(P) * self.systematics.evaluate(P, self.index)
        return m[0] if one else m

    def sigma(self, values, err) -> np.ndarray:
        """Per-point 1-sigma after error inflation, ``(nt,)`` or ``(nw, nt)``."""
        P, one = self._matrix(values)
        err = np.asarray(err, float)[None, :]
        if self.noise == "err_mult":
            s = P[:, self.index["err_mult"]][:, None] * err
        elif self.noise == "jitter":
            j = 1e-6 * P[:, self.index["jitter_ppm"]][:, None] * P[:, self.index["f0"]][:, None]
            s = np.sqrt(err ** 2 + j ** 2)
        else:
            s = np.broadcast_to(err, (P.shape[0], err.shape[1]))
        return s[0] if one else s

    def _kernel_inputs(self, P) -> dict:
        """Per-walker arrays of the fused kernels (astrophysics, ramp, decorrelation) for ``P`` ``(nw, nparams)``."""
        nw = P.shape[0]
        ix = self.index
        if self._tm is None and self._em is None:
            self._build(dict(zip(self.names, P[0])))
        A = E = None
        if self.kind in ("transit", "phasecurve"):
            A = self._buffer("A", nw, self._window_tr is None)
            for k in range(nw):
                self._transit_into(P[k], ix, A[k])
        if self.kind in ("eclipse", "phasecurve"):
            E = self._buffer("E", nw, self._window_ec is None)
            for k in range(nw):
                self._eclipse_into(P[k], ix, E[k])
        dummy2 = _DUMMY2
        trig = dummy2
        pc = np.zeros((nw, 4))
        fp = P[:, ix["fp"]] if "fp" in ix else np.zeros(nw)
        if self.kind == "transit":
            mode = 0
        elif self.kind == "eclipse":
            mode, A = 1, dummy2
        else:
            orb = P[:, self._orbit_cols]
            if (orb == orb[0]).all():
                trig = self._trig_matrix(P[0])
                mode = 2
                d1 = np.deg2rad(P[:, ix["pc_offset1"]])
                pc[:, 0] = P[:, ix["pc_amp1"]] * np.cos(d1)
                pc[:, 1] = P[:, ix["pc_amp1"]] * np.sin(d1)
                if self.pc_order == 2:
                    d2 = np.deg2rad(P[:, ix["pc_offset2"]])
                    pc[:, 2] = P[:, ix["pc_amp2"]] * np.cos(d2)
                    pc[:, 3] = P[:, ix["pc_amp2"]] * np.sin(d2)
            else:
                A = A + self._planet_flux(P) * E
                mode = 0
        if E is None:
            E = dummy2
        sysm = self.systematics
        ramp = np.zeros((nw, 4))
        nramp = {"none": 0, "single": 1, "double": 2}[sysm.ramp]
        if nramp >= 1:
            ramp[:, 0], ramp[:, 1] = P[:, ix["ramp_amp1"]], P[:, ix["ramp_tau1"]]
        if nramp == 2:
            ramp[:, 2], ramp[:, 3] = P[:, ix["ramp_amp2"]], P[:, ix["ramp_tau2"]]
        if not sysm._sorted:
            raise ValueError("LightCurveModel.loglike needs times sorted in increasing order")
        decorr = np.ascontiguousarray(P[:, [ix[f"decorr_{n}"] for n in sysm.regressor_names]])
        nt = self.time.size
        return dict(mode=mode, A=A, E=E, fp=np.ascontiguousarray(fp), pc=pc, trig=trig, ramp=ramp, nramp=nramp,
                    dt_start=sysm.dt_start, decorr=decorr,
                    z=np.ascontiguousarray(sysm._z.reshape(len(sysm.regressor_names), nt)),
                    ramp_k=sysm._rk, ramp_eps=sysm._reps, ramp_step=sysm._rstep)

    def loglike(self, P, flux, err) -> np.ndarray:
        """Gaussian log-likelihood ``(nw,)`` of parameter matrix ``P`` ``(nw, nparams)`` (fused numba kernel).

        Same value as -0.5 sum(((flux - evaluate(P)) / sigma)^2) - sum(log sigma) - n/2 log(2 pi).

        Parameters
        ----------
        P : array_like, shape (nw, nparams)
            Parameter vectors in :attr:`names` order, one row per walker.
        flux, err : array_like, shape (nt,)
            Fitted flux and its 1-sigma errors (flux units).

        Returns
        -------
        numpy.ndarray, shape (nw,)
            Log-likelihood per walker.

        Raises
        ------
        ValueError
            Times not sorted in increasing order.
        """
        from ._kernels import loglike_kernel

        P = np.atleast_2d(np.asarray(P, float))
        nw, nt = P.shape[0], self.time.size
        ix = self.index
        k = self._kernel_inputs(P)
        sysm = self.systematics
        poly = np.ascontiguousarray(P[:, [ix[f"poly{j}"] for j in range(1, sysm.poly_order + 1)]])
        noise_kind = {"none": 0, "err_mult": 1, "jitter": 2}[self.noise]
        noise = P[:, ix["err_mult"]] if noise_kind == 1 else (P[:, ix["jitter_ppm"]] if noise_kind == 2
                                                                  else np.zeros(nw))
        err = np.asarray(err, float)
        return loglike_kernel(np.asarray(flux, float), err, k["mode"], k["A"], k["E"], k["fp"], k["pc"], k["trig"],
                              np.ascontiguousarray(P[:, ix["f0"]]), k["ramp"], k["nramp"], k["dt_start"], poly,
                              np.ascontiguousarray(sysm._powers.reshape(sysm.poly_order, nt)), k["decorr"], k["z"],
                              noise_kind, np.ascontiguousarray(noise), float(np.log(err).sum()),
                              k["ramp_k"], k["ramp_eps"], k["ramp_step"])

    def linear_solve(self, P, flux, ivar, basis, beta_ref=None):
        """Best linear baseline coefficients per walker for the model ``g(t) sum_j beta_j basis_j(t)``.

        ``g`` is astrophysics x ramp x decorrelation at ``P`` (f0 and the polynomial are not read).

        Parameters
        ----------
        P : array_like, shape (nw, nparams)
            Parameter vectors in :attr:`names` order.
        flux : array_like, shape (nt,)
            Fitted flux.
        ivar : array_like, shape (nt,)
            Weights 1 / err^2 (flux units^-2).
        basis : array_like, shape (m, nt)
            Baseline basis functions.
        beta_ref : array_like, shape (m,), optional
            Reference coefficients near the solution (default: 1 for the first basis function, 0 for the
            others); the sums are taken about it for precision.

        Returns
        -------
        chi2 : numpy.ndarray, shape (nw,)
            Minimum weighted chi^2 (inf where the normal matrix is singular).
        beta : numpy.ndarray, shape (nw, m)
            Weighted least-squares coefficients.
        chol : numpy.ndarray, shape (nw, m, m)
            Lower Cholesky factor of the normal matrix B^T W B.
        """
        from ._kernels import linear_kernel

        P = np.atleast_2d(np.asarray(P, float))
        k = self._kernel_inputs(P)
        basis = np.ascontiguousarray(basis, float)
        if beta_ref is None:
            beta_ref = np.zeros(basis.shape[0])
            beta_ref[0] = 1.0
        return linear_kernel(np.asarray(flux, float), np.asarray(ivar, float), basis,
                             np.asarray(beta_ref, float), k["mode"], k["A"], k["E"], k["fp"], k["pc"], k["trig"], k["ramp"], k["nramp"],
                             k["dt_start"], k["decorr"], k["z"], k["ramp_k"], k["ramp_eps"], k["ramp_step"])

    def _buffer(self, name, nw, full):
        """Reused ``(nw, nt)`` work array of ones (first touch of fresh memory is slow on these VMs).

        With a window only the window columns are ever overwritten, so the ones elsewhere stay valid.
        The buffer keeps the largest row count seen and the first ``nw`` rows are returned (a C-contiguous
        view): the number of rows changes from call to call (rows outside the prior are not evaluated).
        """
        bufs = self.__dict__.setdefault("_bufs", {})
        b = bufs.get(name)
        if b is None or b.shape[0] < nw:
            b = np.ones((nw, self.time.size))
            bufs[name] = b
        return b[:nw]

    def _transit_into(self, row, ix, out):
        if self._tm is None:
            return
        p = self._tp
        p.t0, p.per, p.a, p.inc, p.ecc, p.w = self._orbit_tuple(row, ix)
        p.rp = row[ix["rp_rs"]]
        p.t_secondary = self._tm.t_secondary
        p.u = self._u_from({n: row[ix[n]] for n in self.ld_names})
        if self._window_tr is None:
            out[:] = self._tm.light_curve(p)
        else:
            out[self._window_tr] = self._tm.light_curve(p)

    def _eclipse_into(self, row, ix, out):
        if self._em is None:
            return
        if self._window_ec is None:
            out[:] = self._eclipse_lc(row, ix)
        else:
            out[self._window_ec] = self._eclipse_lc(row, ix)

    def subset(self, keep) -> "LightCurveModel":
        """A new model on ``time[keep]`` with the same options and time origins (used after clipping)."""
        keep = np.asarray(keep, bool)
        new = object.__new__(LightCurveModel)
        new.__dict__.update(self.__dict__)
        new.time = self.time[keep]
        new.systematics = self.systematics.subset(keep)
        new._tm = new._em = None
        new._bufs = {}
        new._trig_key = new._trig_mat_key = None  # cached phase angles belong to the old times
        new._window_tr = new._window_ec = None
        frozen = getattr(self, "_orbit_frozen", None)
        if frozen is not None and (self._window_tr is not None or self._window_ec is not None):
            # rebuild the windows on the kept points
            old_idx = np.flatnonzero(keep)
            pos = {i: j for j, i in enumerate(old_idx)}
            if self._window_tr is not None:
                new._window_tr = np.array([pos[i] for i in self._window_tr if i in pos], dtype=int)
            if self._window_ec is not None:
                new._window_ec = np.array([pos[i] for i in self._window_ec if i in pos], dtype=int)
        return new
