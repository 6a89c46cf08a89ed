// zstd_filter.h: HDF5 filter 32015 (zstd), registered inside the process so
// zstd shards read and write with no HDF5 plugin directory installed. Its
// single cd_value is the compression level, as hdf5plugin.Zstd writes it.
#pragma once
#include <stddef.h>

#define DL_ZSTD_FILTER_ID 32015

// Register the filter with HDF5 (idempotent, thread-safe). Returns 0 or -1.
int dl_zstd_register(void);
