/*
 * A configurable test plugin for tests/unit/compute_*_test.c, compiled at
 * test time with `cc -shared -fPIC -I. -DTF_NAME='"x"' -DTF_MODE=N`:
 *   0 good (init/fini/instance_new log through the host; arg fail=1 fails)
 *   1 ABI major 2        2 ABI minor ahead       3 descriptor too small
 *   4 no efn_plugin_v1   5 init fails            6 unresolved symbol (RTLD_NOW)
 *   7 declares another name
 */
#include "compute/edgefn.h"

#include <stdio.h>
#include <string.h>

#ifndef TF_NAME
#define TF_NAME "testfn"
#endif
#ifndef TF_MODE
#define TF_MODE 0
#endif

static const struct efn_host *host;

static int
tf_init(const struct efn_host *h, char *err, size_t errlen)
{
    host = h;
    host->log(NULL, EFN_LOG_INFO, "init " TF_NAME);
    if (TF_MODE == 5) {
        snprintf(err, errlen, "no license for %s", TF_NAME);
        return -1;
    }
    return 0;
}

static void
tf_fini(void)
{
    host->log(NULL, EFN_LOG_INFO, "fini " TF_NAME);
}

static int
tf_instance_new(const efn_arg *args, size_t nargs, void **inst, char *err, size_t errlen)
{
    static int token;
    size_t i;

    for (i = 0; i < nargs; i++)
        if (args[i].key.len == 4 && memcmp(args[i].key.ptr, "fail", 4) == 0) {
            snprintf(err, errlen, "fail requested (%.*s)", (int)args[i].value.len,
                     args[i].value.ptr);
            return -1;
        }
    host->log(NULL, EFN_LOG_INFO, "instance " TF_NAME " nargs=%zu", nargs);
    *inst = &token;
    return 0;
}

static efn_action
tf_request(efn_req *r, void *inst)
{
    (void)r;
    (void)inst;
    return EFN_CONTINUE;
}

#if TF_MODE == 6
extern int tf_no_such_symbol(void);
int tf_use(void);
int
tf_use(void)
{
    return tf_no_such_symbol();
}
#endif

#if TF_MODE == 4
EFN_EXPORT const struct efn_plugin efn_plugin_v2 = {
#else
EFN_EXPORT extern const struct efn_plugin efn_plugin_v1;
EFN_EXPORT const struct efn_plugin efn_plugin_v1 = {
#endif
    .abi_major = TF_MODE == 1 ? 2 : EFN_ABI_MAJOR,
    .abi_minor = TF_MODE == 2 ? EFN_ABI_MINOR + 1 : EFN_ABI_MINOR,
    .size = TF_MODE == 3 ? 16 : sizeof(struct efn_plugin),
    .name = TF_MODE == 7 ? "other" : TF_NAME,
    .version = "test",
    .init = tf_init,
    .fini = tf_fini,
    .instance_new = tf_instance_new,
    .on_request = tf_request,
};
