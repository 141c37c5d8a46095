/*
 * load.c — bringing a module file into the process: the private copy,
 * dlopen, the checks of its entry, its executable ranges, the self-test, and
 * the state hand-over between two versions.
 *
 * The private copy: the dynamic loader returns the handle it already has
 * for a file it loaded before (same name, or same device and inode), so a
 * module is never opened where it lies.  It is copied into the host's
 * private folder under a unique name (pid, sequence number, 64 random bits,
 * slot name), created with O_EXCL | O_NOFOLLOW, hashed (SHA-256) as it is
 * written, opened with dlopen(RTLD_NOW | RTLD_LOCAL) and unlinked at once,
 * whatever dlopen said.  The copy is a private scratch file that nothing
 * reads after a crash, so it is not fsync'd or renamed into place; a copy a
 * dead process left between create and unlink is removed when a host is
 * next opened on the folder.
 *
 * Every call into module code made here (its entry, self-test, state
 * export of a version on probation, state import) runs guarded: a crash
 * inside the module's code refuses the module instead of killing the
 * process, and the module is then kept mapped for ever (never dlclose'd).
 * Constructors that run inside dlopen cannot be guarded (see swap.h).
 */
#include "swap/swap_priv.h"

#include "core/file.h"
#include "livepush/hash.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK (64u * 1024u)
#define HOOK_MSG_MAX 256u
#define DIR_PATH_MAX 2048u

/* ---- the private folder -------------------------------------------------- */

/* Removes copies whose process is gone ("p<pid>.<...>.so"). */
static void sweep_stale(int dirfd)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        if (n[0] != 'p' || len < 5 || strcmp(n + len - 3, ".so") != 0)
            continue;
        char *end;
        errno = 0;
        long pid = strtol(n + 1, &end, 10);
        if (errno || end == n + 1 || *end != '.' || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            unlinkat(dirfd, n, 0);
    }
    closedir(d);
}

lp_status lp_swap_private_dir_open(lp_swap_host *h, const char *dir, lp_error *err)
{
    char buf[DIR_PATH_MAX + 64];
    if (dir) {
        if (!dir[0] || strlen(dir) > DIR_PATH_MAX)
            return lp_error_set(err, LP_ERR_INVALID_ARG,
                                "private folder: the path is empty or longer than %u bytes",
                                DIR_PATH_MAX);
        snprintf(buf, sizeof buf, "%s", dir);
    } else {
        const char *x = secure_getenv("XDG_RUNTIME_DIR");
        if (x && x[0] == '/' && strlen(x) <= DIR_PATH_MAX) {
            snprintf(buf, sizeof buf, "%s/livepush-swap", x);
        } else {
            const char *t = secure_getenv("TMPDIR");
            if (!t || t[0] != '/' || strlen(t) > DIR_PATH_MAX)
                t = "/tmp";
            snprintf(buf, sizeof buf, "%s/livepush-swap-%lu", t, (unsigned long)geteuid());
        }
    }
    lp_status st = lp_file_mkdirs(buf, 0700, err);
    if (st)
        return lp_error_prefix(err, st, "private folder %s", buf);
    int fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return lp_error_set(err, LP_ERR_IO, "private folder %s: %s", buf, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "private folder %s: %s", buf, strerror(e));
    }
    if (sb.st_uid != geteuid()) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO, "private folder %s: owned by uid %lu, not by uid %lu",
                            buf, (unsigned long)sb.st_uid, (unsigned long)geteuid());
    }
    if (sb.st_mode & 077) {
        close(fd);
        return lp_error_set(err, LP_ERR_IO,
                            "private folder %s: mode %04o lets others in (it must be 0700)", buf,
                            (unsigned)(sb.st_mode & 07777));
    }
    h->private_dir = strdup(buf);
    if (!h->private_dir) {
        close(fd);
        return lp_error_set(err, LP_ERR_NOMEM, "private folder: out of memory");
    }
    h->private_fd = fd;
    sweep_stale(fd);
    return LP_OK;
}

/* ---- guarded calls into module code --------------------------------------- */

int lp_swap_run_guarded(lp_swap_version *v, int (*fn)(void *), void *arg, int *crash_sig)
{
    lp_swap_call c;
    memset(&c, 0, offsetof(lp_swap_call, jb_));
    c.version_ = &v->head;
    c.flags_ = LP_SWAP_CF_LOADING;
    *crash_sig = 0;
    lp_swap_guard_push(&c);
    switch (setjmp(c.jb_)) {
    case 0:
        break;
    default:
        /* The handler popped the chain and left the signal blocked. */
        *crash_sig = lp_swap_guard_last_signal();
        lp_swap_guard_unblock(*crash_sig);
        v->keep_mapped = true;
        return -1;
    }
    int rc = fn(arg);
    lp_swap_guard_pop(&c);
    return rc;
}

/* "SIGSEGV at calc.so+0x1139" for a claimed crash in v. */
static void crash_text(const lp_swap_version *v, int sig, char *out, size_t cap)
{
    uintptr_t pc = atomic_load(&v->crash_pc);
    snprintf(out, cap, "%s at offset 0x%lx, address %p", lp_swap_signal_name(sig),
             (unsigned long)(pc - v->base), (void *)atomic_load(&v->crash_addr));
}

/* Makes a hook's message one safe line. */
static void clean_msg(char *m, size_t cap)
{
    m[cap - 1] = '\0';
    for (char *p = m; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    if (!m[0])
        snprintf(m, cap, "no reason given");
}

/* ---- loading ----------------------------------------------------------------- */

static bool printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (n >= max || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return false;
    }
    return n > 0;
}

/* Copies `path` into the private folder; fills priv (full path), the
 * source's identity and the copy's SHA-256.  The copy exists on success. */
static lp_status copy_private(lp_swap_slot *s, const char *path, char *priv, size_t cap,
                              char *name, size_t name_cap, struct stat *src, char sha_hex[65],
                              lp_error *err)
{
    lp_swap_host *h = s->host;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = errno;
        return lp_error_set(err, e == ENOENT ? LP_ERR_NOT_FOUND : LP_ERR_IO, "%s: %s", path,
                            strerror(e));
    }
    if (fstat(in, src) != 0) {
        int e = errno;
        close(in);
        return lp_error_set(err, LP_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(src->st_mode)) {
        close(in);
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: not a regular file", path);
    }
    if ((uint64_t)src->st_size > h->max_module_size) {
        close(in);
        return lp_error_set(err, LP_ERR_TOO_LARGE, "%s: %lld bytes, more than the limit %zu",
                            path, (long long)src->st_size, h->max_module_size);
    }
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = lp_swap_now_ns() ^ (uint64_t)(uintptr_t)&rnd;
    unsigned long long seq = __atomic_add_fetch(&h->file_seq, 1, __ATOMIC_RELAXED);
    snprintf(name, name_cap, "p%ld.%llu.%016llx.%s.so", (long)getpid(), seq,
             (unsigned long long)rnd, s->name);
    snprintf(priv, cap, "%s/%s", h->private_dir, name);
    int out = openat(h->private_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return lp_error_set(err, LP_ERR_IO, "%s: creating the private copy %s: %s", path, priv,
                            strerror(e));
    }
    lp_status st = LP_OK;
    lp_hash_ctx *hc = NULL;
    uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf) {
        st = lp_error_set(err, LP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    st = lp_hash_new(&hc, LP_HASH_SHA256, err);
    if (st)
        goto done;
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            st = lp_error_set(err, LP_ERR_IO, "%s: reading: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > h->max_module_size) {
            st = lp_error_set(err, LP_ERR_TOO_LARGE, "%s: grew past the limit %zu while copied",
                              path, h->max_module_size);
            goto done;
        }
        if ((st = lp_hash_update(hc, buf, (size_t)n, err)) ||
            (st = lp_file_write_all(out, buf, (size_t)n, priv, err)))
            goto done;
    }
    uint8_t digest[LP_HASH_MAX_LEN];
    st = lp_hash_final(hc, digest, err);
    if (st)
        goto done;
    lp_hex_encode(digest, LP_SHA256_LEN, sha_hex);
done:
    lp_hash_free(hc);
    free(buf);
    close(in);
    if (close(out) != 0 && !st)
        st = lp_error_set(err, LP_ERR_IO, "%s: writing the private copy %s: %s", path, priv,
                          strerror(errno));
    if (st)
        unlinkat(h->private_fd, name, 0);
    return st;
}

struct phdr_find {
    uintptr_t addr;
    const char *name;
    lp_swap_version *v;
    bool found;
};

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct phdr_find *f = arg;
    if (info->dlpi_addr != f->addr || !info->dlpi_name || strcmp(info->dlpi_name, f->name) != 0)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        if (p->p_type != PT_LOAD || !(p->p_flags & PF_X) || f->v->ntext >= LP_SWAP_TEXT_MAX)
            continue;
        f->v->text_lo[f->v->ntext] = info->dlpi_addr + p->p_vaddr;
        f->v->text_hi[f->v->ntext] = info->dlpi_addr + p->p_vaddr + p->p_memsz;
        f->v->ntext++;
    }
    f->found = true;
    return 1;
}

/* True when `p` lies in the object whose base is `fbase`. */
static bool in_object(const void *p, const void *fbase)
{
    Dl_info di;
    return p && dladdr(p, &di) != 0 && di.dli_fbase == fbase;
}

struct entry_arg {
    lp_swap_entry_fn fn;
    const lp_swap_module *mod;
};

static int call_entry(void *a)
{
    struct entry_arg *e = a;
    e->mod = e->fn();
    return 0;
}

struct selftest_arg {
    const lp_swap_module *mod;
    char msg[HOOK_MSG_MAX];
};

static int call_selftest(void *a)
{
    struct selftest_arg *t = a;
    return t->mod->self_test(t->mod->table, t->msg, sizeof t->msg);
}

/* Checks the entry's description against the slot; fills v->mod, v->label. */
static lp_status check_module(lp_swap_slot *s, lp_swap_version *v, const char *path,
                              const lp_swap_module *m, const void *fbase, lp_error *err)
{
    if (!m)
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: the entry %s returned NULL", path,
                            LP_SWAP_ENTRY_NAME);
    if (!in_object(m, fbase))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: the entry returned a description outside the module", path);
    if (m->magic != LP_SWAP_MODULE_MAGIC)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: the description's magic is 0x%08x, not 0x%08x", path,
                            (unsigned)m->magic, LP_SWAP_MODULE_MAGIC);
    if (m->struct_size < sizeof(lp_swap_module))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: the description's struct_size is %u, at least %zu expected",
                            path, (unsigned)m->struct_size, sizeof(lp_swap_module));
    if (!in_object(m->interface, fbase) || !printable(m->interface, LP_SWAP_NAME_MAX))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: the interface name is missing, outside the module, or not 1..%u "
                            "printable characters",
                            path, LP_SWAP_NAME_MAX);
    if (strcmp(m->interface, s->interface) != 0)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "%s: interface \"%s\", the slot needs \"%s\"", path, m->interface,
                            s->interface);
    if (m->abi_version != s->abi_version)
        return lp_error_set(err, LP_ERR_UNSUPPORTED, "%s: ABI version %u, the slot needs %u",
                            path, (unsigned)m->abi_version, (unsigned)s->abi_version);
    if (m->table_size != s->table_size)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "%s: table size %zu bytes, the slot needs %zu", path, m->table_size,
                            s->table_size);
    if (!in_object(m->table, fbase))
        return lp_error_set(err, LP_ERR_MALFORMED, "%s: the table is missing or outside the module",
                            path);
    if (!(s->flags & LP_SWAP_SLOT_TABLE_MIXED)) {
        typedef void (*any_fn)(void);
        for (size_t i = 0; i < s->table_size / sizeof(any_fn); i++) {
            any_fn f;
            memcpy(&f, (const char *)m->table + i * sizeof f, sizeof f);
            if (!f)
                return lp_error_set(err, LP_ERR_MALFORMED, "%s: table entry %zu is NULL", path,
                                    i);
        }
    }
    if (!in_object(m->version, fbase) || !printable(m->version, LP_SWAP_VERSION_MAX))
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: the version label is missing, outside the module, or not 1..%u "
                            "printable characters",
                            path, LP_SWAP_VERSION_MAX);
    v->mod = m;
    snprintf(v->label, sizeof v->label, "%s", m->version);
    memcpy(lp_swap_version_table(v), m->table, s->table_size);
    return LP_OK;
}

/* Disposes of a version that never went live. */
static void discard(lp_swap_version *v)
{
    lp_swap_version_free(v);
}

lp_status lp_swap_load(lp_swap_slot *s, const char *path, lp_swap_version **out, lp_error *err)
{
    *out = NULL;
    if (!path || !path[0] || strlen(path) >= LP_SWAP_PATH_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "module path is empty or too long");
    lp_swap_host *h = s->host;
    /* The version and, right after its head, the copy of the table. */
    lp_swap_version *v = calloc(1, sizeof *v + s->table_size);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        return lp_error_set(err, LP_ERR_NOMEM, "%s: out of memory", path);
    }
    v->head.u_.owner_ = v;
    v->slot = s;
    atomic_init(&v->state, LP_SWAP_V_LOADED);

    char priv[DIR_PATH_MAX + 128 + LP_SWAP_NAME_MAX], name[128 + LP_SWAP_NAME_MAX];
    struct stat src;
    lp_status st = copy_private(s, path, priv, sizeof priv, name, sizeof name, &src, v->sha256,
                                err);
    if (st) {
        discard(v);
        return st;
    }
    v->dev = src.st_dev;
    v->ino = src.st_ino;
    dlerror();
    v->handle = dlopen(priv, RTLD_NOW | RTLD_LOCAL);
    const char *dle = v->handle ? NULL : dlerror();
    unlinkat(h->private_fd, name, 0);
    if (!v->handle) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: dlopen: %s", path,
                          dle ? dle : "unknown error");
        discard(v);
        return st;
    }
    atomic_fetch_add(&s->loaded, 1);

    struct link_map *lm = NULL;
    if (dlinfo(v->handle, RTLD_DI_LINKMAP, &lm) != 0 || !lm) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: dlinfo: %s", path, dlerror());
        discard(v);
        return st;
    }
    v->base = (uintptr_t)lm->l_addr;
    struct phdr_find f = {.addr = (uintptr_t)lm->l_addr, .name = lm->l_name, .v = v};
    dl_iterate_phdr(phdr_cb, &f);
    if (!f.found || v->ntext == 0) {
        st = lp_error_set(err, LP_ERR_MALFORMED, "%s: no executable segment found", path);
        discard(v);
        return st;
    }

    dlerror();
    void *sym = dlsym(v->handle, LP_SWAP_ENTRY_NAME);
    if (!sym) {
        const char *e = dlerror();
        st = lp_error_set(err, LP_ERR_NOT_FOUND, "%s: no entry symbol %s (%s)", path,
                          LP_SWAP_ENTRY_NAME, e ? e : "NULL");
        discard(v);
        return st;
    }
    bool sym_inside = false;
    for (int i = 0; i < v->ntext; i++)
        if ((uintptr_t)sym >= v->text_lo[i] && (uintptr_t)sym < v->text_hi[i])
            sym_inside = true;
    Dl_info self_info;
    if (!sym_inside || dladdr(sym, &self_info) == 0) {
        st = lp_error_set(err, LP_ERR_NOT_FOUND,
                          "%s: the entry symbol %s is not defined by the module itself", path,
                          LP_SWAP_ENTRY_NAME);
        discard(v);
        return st;
    }

    struct entry_arg ea = {0};
    memcpy(&ea.fn, &sym, sizeof ea.fn);
    int sig = 0;
    lp_swap_run_guarded(v, call_entry, &ea, &sig);
    if (sig) {
        char ct[160];
        crash_text(v, sig, ct, sizeof ct);
        st = lp_error_set(err, LP_ERR_STATE, "%s: the entry %s crashed: %s", path,
                          LP_SWAP_ENTRY_NAME, ct);
        discard(v);
        return st;
    }
    st = check_module(s, v, path, ea.mod, self_info.dli_fbase, err);
    if (st) {
        discard(v);
        return st;
    }
    if (v->mod->self_test) {
        struct selftest_arg ta = {.mod = v->mod};
        int rc = lp_swap_run_guarded(v, call_selftest, &ta, &sig);
        if (sig) {
            char ct[160];
            crash_text(v, sig, ct, sizeof ct);
            st = lp_error_set(err, LP_ERR_STATE, "%s: version %s: the self-test crashed: %s",
                              path, v->label, ct);
            discard(v);
            return st;
        }
        if (rc != 0) {
            clean_msg(ta.msg, sizeof ta.msg);
            st = lp_error_set(err, LP_ERR_STATE, "%s: version %s: the self-test failed (%d): %s",
                              path, v->label, rc, ta.msg);
            discard(v);
            return st;
        }
    }
    *out = v;
    return LP_OK;
}

/* ---- state hand-over ---------------------------------------------------------- */

struct export_arg {
    const lp_swap_module *mod;
    void *data;
    size_t len;
    char msg[HOOK_MSG_MAX];
};

static int call_export(void *a)
{
    struct export_arg *e = a;
    return e->mod->state_export(&e->data, &e->len, e->msg, sizeof e->msg);
}

struct import_arg {
    const lp_swap_module *mod;
    const void *data;
    size_t len;
    const char *from;
    char msg[HOOK_MSG_MAX];
};

static int call_import(void *a)
{
    struct import_arg *i = a;
    return i->mod->state_import(i->data, i->len, i->from, i->msg, sizeof i->msg);
}

lp_status lp_swap_handover(lp_swap_slot *s, lp_swap_version *from, lp_swap_version *to,
                           bool guard_export, lp_error *err)
{
    if (!from || !from->mod || !from->mod->state_export)
        return LP_OK;
    if (!to->mod->state_import)
        return lp_error_set(err, LP_ERR_UNSUPPORTED,
                            "%s: version %s exports its state and version %s has no state_import "
                            "to take it",
                            to->path, from->label, to->label);
    struct export_arg ea = {.mod = from->mod};
    int sig = 0, rc;
    if (guard_export)
        rc = lp_swap_run_guarded(from, call_export, &ea, &sig);
    else
        rc = call_export(&ea);
    if (sig) {
        char ct[160];
        crash_text(from, sig, ct, sizeof ct);
        return lp_error_set(err, LP_ERR_STATE, "%s: the state export of version %s crashed: %s",
                            from->path, from->label, ct);
    }
    if (rc != 0) {
        clean_msg(ea.msg, sizeof ea.msg);
        free(ea.data);
        return lp_error_set(err, LP_ERR_STATE, "%s: the state export of version %s failed (%d): %s",
                            from->path, from->label, rc, ea.msg);
    }
    if (ea.len > s->state_max) {
        free(ea.data);
        return lp_error_set(err, LP_ERR_TOO_LARGE,
                            "%s: version %s exported %zu bytes of state, more than the limit %zu",
                            from->path, from->label, ea.len, s->state_max);
    }
    if (ea.len && !ea.data)
        return lp_error_set(err, LP_ERR_MALFORMED,
                            "%s: version %s exported %zu bytes of state but no buffer",
                            from->path, from->label, ea.len);
    struct import_arg ia = {.mod = to->mod, .data = ea.data ? ea.data : "", .len = ea.len,
                            .from = from->label};
    rc = lp_swap_run_guarded(to, call_import, &ia, &sig);
    free(ea.data);
    if (sig) {
        char ct[160];
        crash_text(to, sig, ct, sizeof ct);
        return lp_error_set(err, LP_ERR_STATE,
                            "%s: version %s: the state import (from version %s) crashed: %s",
                            to->path, to->label, from->label, ct);
    }
    if (rc != 0) {
        clean_msg(ia.msg, sizeof ia.msg);
        return lp_error_set(err, LP_ERR_STATE,
                            "%s: version %s: the state import (from version %s) failed (%d): %s",
                            to->path, to->label, from->label, rc, ia.msg);
    }
    return LP_OK;
}
