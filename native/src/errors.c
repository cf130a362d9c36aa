/* Config error code -> field name and requirement (string literals only). */
#include "ohil_core.h"

const char *ohil_error_field(int code)
{
    switch (code) {
    case OHIL_ADCS_E_INERTIA: return "inertia_kgm2";
    case OHIL_ADCS_E_WHEEL_INERTIA: return "wheel_inertia_kgm2";
    case OHIL_ADCS_E_WHEEL_MAX_TORQUE: return "wheel_max_torque_nm";
    case OHIL_ADCS_E_WHEEL_MAX_SPEED: return "wheel_max_speed_rad_s";
    case OHIL_ADCS_E_DIPOLE_MAX: return "dipole_max_am2";
    case OHIL_ADCS_E_BDOT_GAIN: return "bdot_gain";
    case OHIL_ADCS_E_ATT_WN: return "att_wn_rad_s";
    case OHIL_ADCS_E_ATT_ZETA: return "att_zeta";
    case OHIL_ADCS_E_MAX_SLEW_RATE: return "max_slew_rate_rad_s";
    case OHIL_ADCS_E_UNLOAD_GAIN: return "unload_gain_per_s";
    case OHIL_ADCS_E_ARRAY_NORMAL: return "array_normal_body";
    case OHIL_ADCS_E_SEARCH_AXIS: return "search_axis_body";
    case OHIL_ADCS_E_SEARCH_RATE: return "search_rate_rad_s";
    case OHIL_ADCS_E_K_SUN: return "k_sun";
    case OHIL_ADCS_E_K_MAG: return "k_mag";
    case OHIL_ADCS_E_K_BIAS: return "k_bias";
    case OHIL_ADCS_E_MAX_BIAS: return "max_bias_rad_s";
    case OHIL_ADCS_E_MAX_DT: return "max_dt_s";
    case OHIL_ADCS_E_ATT_HOLD: return "att_hold_s";
    case OHIL_ADCS_E_NULL: return "(null config)";
    case OHIL_EPS_E_CAPACITY: return "capacity_ah";
    case OHIL_EPS_E_CHARGE_EFF: return "charge_eff";
    case OHIL_EPS_E_OCV: return "ocv_v";
    case OHIL_EPS_E_REST_CURRENT: return "rest_current_a";
    case OHIL_EPS_E_REST_TIME: return "rest_time_s";
    case OHIL_EPS_E_OCV_TAU: return "ocv_tau_s";
    case OHIL_EPS_E_SOC_INIT: return "soc_init";
    case OHIL_EPS_E_LOW_ENTER: return "low_enter_soc";
    case OHIL_EPS_E_LOW_EXIT: return "low_exit_soc";
    case OHIL_EPS_E_CRIT_ENTER: return "critical_enter_soc";
    case OHIL_EPS_E_CRIT_EXIT: return "critical_exit_soc";
    case OHIL_EPS_E_CRIT_VOLTAGE: return "critical_voltage_v";
    case OHIL_EPS_E_N_LOADS: return "n_loads";
    case OHIL_EPS_E_LOAD_SHED_MODE: return "load_shed_mode";
    case OHIL_EPS_E_SOC_FLOOR: return "soc_floor";
    case OHIL_EPS_E_PAYLOAD_MAX: return "payload_max_w";
    case OHIL_EPS_E_BUDGET_MARGIN: return "budget_margin";
    case OHIL_EPS_E_MAX_DT: return "max_dt_s";
    case OHIL_EPS_E_NULL: return "(null config)";
    case OHIL_THERM_E_N_ZONES: return "n_zones";
    case OHIL_THERM_E_HEATER_ON: return "heater_on_k";
    case OHIL_THERM_E_HEATER_OFF: return "heater_off_k";
    case OHIL_THERM_E_HEATER_POWER: return "heater_power_w";
    case OHIL_THERM_E_MIN_ON: return "min_on_s";
    case OHIL_THERM_E_MIN_OFF: return "min_off_s";
    case OHIL_THERM_E_DERATE_START: return "derate_start_k";
    case OHIL_THERM_E_DERATE_END: return "derate_end_k";
    case OHIL_THERM_E_THROTTLE_DOWN: return "throttle_down_per_s";
    case OHIL_THERM_E_THROTTLE_UP: return "throttle_up_per_s";
    case OHIL_THERM_E_TRIP: return "trip_k";
    case OHIL_THERM_E_TRIP_RESET: return "trip_reset_k";
    case OHIL_THERM_E_MAX_DT: return "max_dt_s";
    case OHIL_THERM_E_NULL: return "(null config)";
    default: return "";
    }
}

const char *ohil_error_reason(int code)
{
    switch (code) {
    case OHIL_ADCS_E_INERTIA: return "each of the three moments must be finite and > 0";
    case OHIL_ADCS_E_ARRAY_NORMAL: return "must be a finite unit vector";
    case OHIL_ADCS_E_SEARCH_AXIS:
        return "must be a finite unit vector perpendicular to array_normal_body";
    case OHIL_ADCS_E_SEARCH_RATE: return "must be > 0 and <= max_slew_rate_rad_s";
    case OHIL_ADCS_E_UNLOAD_GAIN:
    case OHIL_ADCS_E_K_SUN:
    case OHIL_ADCS_E_K_MAG:
    case OHIL_ADCS_E_K_BIAS:
    case OHIL_ADCS_E_ATT_HOLD:
    case OHIL_EPS_E_REST_CURRENT:
    case OHIL_EPS_E_REST_TIME:
    case OHIL_EPS_E_CRIT_VOLTAGE:
    case OHIL_EPS_E_PAYLOAD_MAX:
    case OHIL_THERM_E_HEATER_POWER:
    case OHIL_THERM_E_MIN_ON:
    case OHIL_THERM_E_MIN_OFF:
        return "must be finite and >= 0";
    case OHIL_EPS_E_CHARGE_EFF:
    case OHIL_EPS_E_BUDGET_MARGIN:
        return "must be in (0, 1]";
    case OHIL_EPS_E_OCV: return "must be 11 finite values > 0, strictly increasing (SOC 0 to 1)";
    case OHIL_EPS_E_SOC_INIT: return "must be in [0, 1], or < 0 to start from the OCV";
    case OHIL_EPS_E_LOW_ENTER: return "must be in (0, 1)";
    case OHIL_EPS_E_LOW_EXIT: return "must be in (low_enter_soc, 1)";
    case OHIL_EPS_E_CRIT_ENTER: return "must be in [0, low_enter_soc)";
    case OHIL_EPS_E_CRIT_EXIT: return "must be in (critical_enter_soc, low_exit_soc)";
    case OHIL_EPS_E_N_LOADS: return "must be in 0..16";
    case OHIL_EPS_E_LOAD_SHED_MODE:
        return "each used entry must be 1 (shed in LOW), 2 (shed in CRITICAL) or 3 (never)";
    case OHIL_EPS_E_SOC_FLOOR: return "must be in [0, 1)";
    case OHIL_THERM_E_N_ZONES: return "must be in 0..8";
    case OHIL_THERM_E_HEATER_OFF: return "each used entry must be finite and > heater_on_k";
    case OHIL_THERM_E_DERATE_END: return "must be finite and > derate_start_k";
    case OHIL_THERM_E_TRIP: return "must be finite and >= derate_end_k";
    case OHIL_THERM_E_TRIP_RESET: return "must be finite, > 0 and < trip_k";
    case OHIL_ADCS_E_NULL:
    case OHIL_EPS_E_NULL:
    case OHIL_THERM_E_NULL:
        return "config pointer is NULL";
    case 0: return "";
    default:
        if ((code > 100 && code < 400)) return "must be finite and > 0";
        return "";
    }
}
