#include "ohil_core.h"

int ohil_core_abi_version(void) { return OHIL_CORE_ABI_VERSION; }
