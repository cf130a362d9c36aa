"""Physical constants used by the rig, each defined once.

SI units unless the name says otherwise. Other rig modules import from here; no
other module may restate a value.
"""

from __future__ import annotations

# --- Earth -----------------------------------------------------------------
#: Earth equatorial radius, WGS-72/WGS-84 (also the spherical shadow radius).
EARTH_RADIUS_M: float = 6_378_137.0
#: Earth gravitational parameter (WGS-84, m^3/s^2).
EARTH_MU_M3_S2: float = 3.986004418e14
#: Earth second zonal harmonic (EGM-96 / WGS-84 value).
EARTH_J2: float = 1.08262668e-3
#: Earth rotation rate (sidereal, rad/s).
EARTH_ROTATION_RAD_S: float = 7.2921150e-5
#: Mean Earth infrared emission at the top of the atmosphere (W/m^2).
EARTH_IR_W_M2: float = 237.0
#: Mean Bond albedo of the Earth.
EARTH_ALBEDO: float = 0.30

# --- Sun -------------------------------------------------------------------
#: Nominal solar radius (IAU 2015 B3).
SUN_RADIUS_M: float = 695_700_000.0
#: Astronomical unit (IAU 2012 B2).
AU_M: float = 149_597_870_700.0
#: Total solar irradiance at 1 AU (W/m^2).
SOLAR_CONSTANT_W_M2: float = 1361.0
#: Tropical year (days), sets the sun-synchronous nodal rate.
TROPICAL_YEAR_DAYS: float = 365.2421897

# --- Physics ----------------------------------------------------------------
#: Stefan-Boltzmann constant (CODATA 2018, W m^-2 K^-4).
STEFAN_BOLTZMANN_W_M2_K4: float = 5.670374e-8
#: 0 °C in kelvin (°C appear only at the edges: scenario files, reports, the CLI).
ZERO_CELSIUS_K: float = 273.15
#: Deep-space background temperature (K).
SPACE_TEMP_K: float = 2.7

# --- Geomagnetic field: IGRF-13 degree-1 Gauss coefficients at 2020.0 (nT) and
# their secular variation (nT/yr), used by the tilted-dipole model.
IGRF13_G10_NT: float = -29404.8
IGRF13_G11_NT: float = -1450.9
IGRF13_H11_NT: float = 4652.5
IGRF13_G10_SV_NT_YR: float = 5.7
IGRF13_G11_SV_NT_YR: float = 7.4
IGRF13_H11_SV_NT_YR: float = -25.9
IGRF13_EPOCH_YEAR: float = 2020.0

# --- Time --------------------------------------------------------------------
SECONDS_PER_DAY: float = 86_400.0
NS_PER_S: int = 1_000_000_000
NS_PER_DAY: int = 86_400 * NS_PER_S
#: Julian date of the Unix epoch 1970-01-01T00:00:00 UTC.
JD_UNIX_EPOCH: float = 2_440_587.5
#: Julian date of J2000.0.
JD_J2000: float = 2_451_545.0
#: TT - TAI (s).
TT_MINUS_TAI_S: float = 32.184
