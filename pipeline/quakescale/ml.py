"""Local-magnitude relations shared by the synthetic world and the magnitude stage.

Wood-Anderson (WA) seismograph: natural period 0.8 s, damping 0.7, static magnification
2080 (IASPEI 2013 standard).  Amplitudes are zero-to-peak WA displacement in **millimetres**
(column ``amp_wa_mm``).  The default distance correction is Hutton & Boore (1987):

    ML = log10(A_mm) + 1.110 log10(r / 100) + 0.00189 (r - 100) + 3.0,   r hypocentral km.
"""

from __future__ import annotations

import numpy as np

WA_PERIOD_S = 0.8
WA_DAMPING = 0.7
WA_GAIN = 2080.0

# ObsPy-style PAZ of the Wood-Anderson displacement seismograph (input m, output m).
WA_PAZ = {
    "poles": [-5.49779 - 5.60886j, -5.49779 + 5.60886j],
    "zeros": [0j, 0j],
    "gain": 1.0,
    "sensitivity": WA_GAIN,
}


def wa_response_disp(freq_hz):
    """Complex WA response to ground displacement (m -> m), including the 2080 gain."""
    s = 2j * np.pi * np.asarray(freq_hz, float)
    w0 = 2 * np.pi / WA_PERIOD_S
    return WA_GAIN * s**2 / (s**2 + 2 * WA_DAMPING * w0 * s + w0**2)


def hutton_boore_minus_log_a0(r_km):
    r = np.asarray(r_km, float)
    return 1.110 * np.log10(r / 100.0) + 0.00189 * (r - 100.0) + 3.0


DISTANCE_CORRECTIONS = {"hutton_boore_1987": hutton_boore_minus_log_a0}


def ml_from_amplitude(amp_wa_mm, r_km, correction: str = "hutton_boore_1987"):
    """Station ML from zero-to-peak WA amplitude in mm at hypocentral distance ``r_km``."""
    try:
        f = DISTANCE_CORRECTIONS[correction]
    except KeyError:
        raise ValueError(
            f"unknown ML distance correction {correction!r}; known: {sorted(DISTANCE_CORRECTIONS)}"
        ) from None
    return np.log10(np.asarray(amp_wa_mm, float)) + f(r_km)


def amplitude_from_ml(ml, r_km, correction: str = "hutton_boore_1987"):
    """Inverse of :func:`ml_from_amplitude` (WA mm)."""
    return 10.0 ** (np.asarray(ml, float) - DISTANCE_CORRECTIONS[correction](r_km))
