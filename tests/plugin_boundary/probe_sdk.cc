// A plugin translation unit sees the plugin ABI and every plugin SDK header.
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/accuracy.h"
#include "kestrel/plugin_sdk/device_checks.h"
#include "kestrel/plugin_sdk/device_table.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/host_plugin.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/plugin_glue.h"
#include "kestrel/plugin_sdk/quants.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/reference_ops.h"
#include "kestrel/plugin_sdk/status.h"
#include "kestrel/plugin_sdk/weight_dtype_support.h"

int kestrel_plugin_probe_sdk() { return static_cast<int>(kestrel::plugin_sdk::TensorBytes({})); }
