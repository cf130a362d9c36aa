/* orbit-hil flight core: public umbrella header.
 * C99, no heap, no mutable globals or statics.
 *
 * ohil_flight_* steps the three loops (ADCS, EPS, thermal) of one spacecraft
 * per frame; ohil_flight_step_batch steps n frames in one call. */
#ifndef OHIL_CORE_H
#define OHIL_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "ohil_adcs.h"
#include "ohil_eps.h"
#include "ohil_thermal.h"

#define OHIL_CORE_ABI_VERSION 2

typedef struct {
    ohil_adcs_cfg adcs;
    ohil_eps_cfg eps;
    ohil_therm_cfg therm;
} ohil_flight_cfg;

typedef struct {
    ohil_adcs_state adcs;
    ohil_eps_state eps;
    ohil_therm_state therm;
} ohil_flight_state;

typedef struct {
    ohil_adcs_in adcs;
    ohil_eps_in eps;
    ohil_therm_in therm;
} ohil_flight_in;

typedef struct {
    ohil_adcs_out adcs;
    ohil_eps_out eps;
    ohil_therm_out therm;
} ohil_flight_out;

int ohil_core_abi_version(void);

/* Name of the config field behind an *_init error code ("" for 0 / unknown). */
const char *ohil_error_field(int code);
/* What the field must satisfy ("" for 0 / unknown). */
const char *ohil_error_reason(int code);

int ohil_flight_init(const ohil_flight_cfg *cfg);
void ohil_flight_reset(const ohil_flight_cfg *cfg, ohil_flight_state *st);
void ohil_flight_step(const ohil_flight_cfg *cfg, ohil_flight_state *st,
                      const ohil_flight_in *in, ohil_flight_out *out);
void ohil_flight_step_batch(const ohil_flight_cfg *cfg, ohil_flight_state *st,
                            const ohil_flight_in *in, ohil_flight_out *out, size_t n);
/* Steps n frames cycling over in[0 .. n_in - 1], keeping only the last
 * output (the benchmark's C loop). n_in = 0 steps nothing. */
void ohil_flight_run_n(const ohil_flight_cfg *cfg, ohil_flight_state *st,
                       const ohil_flight_in *in, size_t n_in, ohil_flight_out *out, size_t n);

#endif /* OHIL_CORE_H */
