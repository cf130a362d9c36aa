/* orbit-hil flight core: public umbrella header.
 * C99, no heap, no mutable globals or statics. */
#ifndef OHIL_CORE_H
#define OHIL_CORE_H

#define OHIL_CORE_ABI_VERSION 1

int ohil_core_abi_version(void);

#endif /* OHIL_CORE_H */
