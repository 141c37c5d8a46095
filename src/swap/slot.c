/*
 * slot.c — slots: declaration, the out-of-line parts of the call path,
 * update (load, baseline, hand-over, swap), probation (judging, commit,
 * rollback, finishing a crash the signal handler claimed) and information.
 * A version from a release of the followed install root that its probation
 * rolls back (a crash, its error rate or latency) is queued for a report to
 * the agent (report.c); a rollback on request or because the release went
 * back is not.
 *
 * A probation ends exactly once: the signal handler (claimed crash), the
 * tick (judgment or window end) and lp_swap_commit / lp_swap_rollback all
 * end it with a compare-and-swap of the version's state from PROBATION, and
 * only the winner replaces pointers and retires the loser's version.  The
 * handler's part is only the pointer store; lp_swap_settle finishes it
 * (reporting, retiring) from the tick.
 *
 * Statistics: each measured version has LP_SWAP_SHARDS cache-line-aligned
 * shards of counters; a thread adds to shard (index % LP_SWAP_SHARDS) with
 * relaxed atomic adds.  Sums are read without stopping anyone (a call that
 * is just being counted may or may not be in a sum; nothing depends on it).
 */
#include "swap/swap_priv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- call path (out of line) ------------------------------------------------ */

static unsigned bucket_of(uint64_t ns)
{
    if (ns < 4)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (msb - 2)) & 3u;
    unsigned b = 4u + (msb - 2u) * 4u + sub;
    return b < LP_SWAP_HIST_BUCKETS ? b : LP_SWAP_HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(unsigned b)
{
    if (b < 4)
        return b + 1u;
    unsigned msb = (b - 4u) / 4u + 2u, sub = (b - 4u) % 4u;
    return (uint64_t)(5u + sub) << (msb - 2u);
}

int lp_swap_enter_slow_(lp_swap_call *c)
{
    struct lp_swap_vhead_ *vh = c->version_;
    if (!vh) {
        lp_swap_read_leave_(&c->thread_->r, c->outer_);
        c->table = NULL;
        c->outcome = LP_SWAP_EMPTY;
        c->flags_ = LP_SWAP_CF_DONE;
        return -1;
    }
    /* Acquire: the statistics behind MEASURE were set up before it. */
    unsigned f = __atomic_load_n(&vh->flags, __ATOMIC_ACQUIRE);
    c->table = LP_SWAP_VTABLE_(vh);
    c->outcome = LP_SWAP_ENTERED;
    c->signal = 0;
    if (f == 0) {
        c->flags_ = 0;
        return 0;
    }
    c->flags_ = f | LP_SWAP_CF_SLOW;
    if (f & LP_SWAP_VF_TIMED)
        c->start_ns_ = lp_swap_now_ns();
    if (f & LP_SWAP_VF_GUARD) {
        lp_swap_guard_push(c);
        return 1;
    }
    return 0;
}

void lp_swap_leave_slow_(lp_swap_call *c, int failed)
{
    unsigned f = c->flags_;
    if (f & LP_SWAP_CF_DONE)
        return;
    if (f & LP_SWAP_VF_GUARD)
        lp_swap_guard_pop(c);
    if (f & LP_SWAP_VF_MEASURE) {
        lp_swap_version *v = lp_swap_version_of(c->version_);
        lp_swap_shard *sh = &v->stats[c->thread_->index % LP_SWAP_SHARDS];
        atomic_fetch_add_explicit(&sh->calls, 1, memory_order_relaxed);
        if (failed)
            atomic_fetch_add_explicit(&sh->errors, 1, memory_order_relaxed);
        if (f & LP_SWAP_VF_TIMED) {
            uint64_t d = lp_swap_now_ns() - c->start_ns_;
            atomic_fetch_add_explicit(&sh->hist[bucket_of(d)], 1, memory_order_relaxed);
        }
    }
    lp_swap_read_leave_(&c->thread_->r, c->outer_);
    c->flags_ = LP_SWAP_CF_DONE;
}

/* ---- statistics ------------------------------------------------------------- */

void lp_swap_sum_stats(const lp_swap_version *v, lp_swap_sum *out)
{
    memset(out, 0, sizeof *out);
    if (!v->stats)
        return;
    for (unsigned i = 0; i < LP_SWAP_SHARDS; i++) {
        const lp_swap_shard *sh = &v->stats[i];
        out->calls += atomic_load_explicit(&sh->calls, memory_order_relaxed);
        out->errors += atomic_load_explicit(&sh->errors, memory_order_relaxed);
        for (unsigned b = 0; b < LP_SWAP_HIST_BUCKETS; b++)
            out->hist[b] += atomic_load_explicit(&sh->hist[b], memory_order_relaxed);
    }
}

static uint64_t percentile(const lp_swap_sum *s, double q)
{
    uint64_t n = 0;
    for (unsigned b = 0; b < LP_SWAP_HIST_BUCKETS; b++)
        n += s->hist[b];
    if (n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)n);
    if (rank == 0)
        rank = 1;
    uint64_t acc = 0;
    for (unsigned b = 0; b < LP_SWAP_HIST_BUCKETS; b++) {
        acc += s->hist[b];
        if (acc >= rank)
            return bucket_upper(b);
    }
    return bucket_upper(LP_SWAP_HIST_BUCKETS - 1);
}

void lp_swap_stats_of(const lp_swap_sum *sum, bool timed, lp_swap_stats *out)
{
    memset(out, 0, sizeof *out);
    out->calls = sum->calls;
    out->errors = sum->errors;
    if (timed) {
        out->p50_ns = percentile(sum, 0.50);
        out->p99_ns = percentile(sum, 0.99);
        out->p999_ns = percentile(sum, 0.999);
    }
}

static lp_swap_shard *new_shards(void)
{
    size_t size = sizeof(lp_swap_shard) * LP_SWAP_SHARDS;
    lp_swap_shard *s = aligned_alloc(64, size);
    if (s)
        memset(s, 0, size);
    return s;
}

/* ---- declaration -------------------------------------------------------------- */

static bool valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= LP_SWAP_NAME_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

static bool valid_printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return false;
    return n > 0;
}

/* Relative, no "." or ".." component, no empty component, printable. */
static bool valid_module_path(const char *p)
{
    if (!valid_printable(p, 1024) || p[0] == '/')
        return false;
    const char *c = p;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (!e)
            break;
        c = e + 1;
    }
    return p[strlen(p) - 1] != '/';
}

static bool valid_factor(double x)
{
    return x >= 0.0 && isfinite(x);
}

lp_status lp_swap_slot_declare(lp_swap_host *h, const lp_swap_slot_config *cfg,
                               lp_swap_slot **out, lp_error *err)
{
    if (!h || !cfg || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "slot: no host, configuration or output");
    *out = NULL;
    if (!cfg->name || !valid_name(cfg->name))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot: the name must be 1..%u characters of [A-Za-z0-9._-]",
                            LP_SWAP_NAME_MAX);
    if (!cfg->interface || !valid_printable(cfg->interface, LP_SWAP_NAME_MAX))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: the interface name must be 1..%u printable characters",
                            cfg->name, LP_SWAP_NAME_MAX);
    if (cfg->table_size == 0 || cfg->table_size > LP_SWAP_TABLE_MAX)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: table size %zu is out of range (1..%u)", cfg->name,
                            cfg->table_size, LP_SWAP_TABLE_MAX);
    if (!(cfg->flags & LP_SWAP_SLOT_TABLE_MIXED) && cfg->table_size % sizeof(void (*)(void)) != 0)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: table size %zu is not a whole number of function pointers "
                            "(declare LP_SWAP_SLOT_TABLE_MIXED for a table with other fields)",
                            cfg->name, cfg->table_size);
    if (cfg->flags & ~(unsigned)LP_SWAP_SLOT_TABLE_MIXED)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "slot %s: unknown flags 0x%x", cfg->name,
                            cfg->flags);
    if (cfg->module_path && !valid_module_path(cfg->module_path))
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: module_path \"%s\" must be a relative path inside a release "
                            "(no \"..\", \".\" or empty parts, at most 1024 characters)",
                            cfg->name, cfg->module_path);
    if (cfg->module_path && !h->install_root)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: module_path is set but the host follows no install root",
                            cfg->name);
    const lp_swap_probation *p = &cfg->probation;
    if (p->flags & ~15u)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "slot %s: unknown probation flags 0x%x",
                            cfg->name, p->flags);
    if (p->window_ms > 86400000u || p->baseline_ms > 600000u)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: probation window (at most a day) or baseline (at most 10 "
                            "minutes) out of range",
                            cfg->name);
    if (!valid_factor(p->error_factor) || !valid_factor(p->error_slack) ||
        !valid_factor(p->latency_factor) || p->error_slack > 1.0)
        return lp_error_set(err, LP_ERR_INVALID_ARG,
                            "slot %s: probation factors must be finite and not negative, and "
                            "error_slack at most 1",
                            cfg->name);

    lp_swap_slot *s = calloc(1, sizeof *s);
    if (!s)
        return lp_error_set(err, LP_ERR_NOMEM, "slot %s: out of memory", cfg->name);
    s->host = h;
    snprintf(s->name, sizeof s->name, "%s", cfg->name);
    snprintf(s->interface, sizeof s->interface, "%s", cfg->interface);
    s->abi_version = cfg->abi_version;
    s->table_size = cfg->table_size;
    s->flags = cfg->flags;
    s->state_max = cfg->state_max ? cfg->state_max : (size_t)LP_SWAP_DEFAULT_STATE_MAX;
    s->prob = *p;
    if (!s->prob.window_ms)
        s->prob.window_ms = 10000;
    if (!s->prob.baseline_ms)
        s->prob.baseline_ms = 1000;
    if (!s->prob.min_calls)
        s->prob.min_calls = 100;
    if (s->prob.error_factor <= 0.0)
        s->prob.error_factor = 2.0;
    if (s->prob.error_slack <= 0.0)
        s->prob.error_slack = 0.01;
    if (s->prob.latency_factor <= 0.0)
        s->prob.latency_factor = 2.0;
    if (!s->prob.latency_slack_ns)
        s->prob.latency_slack_ns = 10000;
    if (cfg->module_path && !(s->module_path = strdup(cfg->module_path))) {
        free(s);
        return lp_error_set(err, LP_ERR_NOMEM, "slot %s: out of memory", cfg->name);
    }
    pthread_mutex_init(&s->op_mu, NULL);

    pthread_mutex_lock(&h->mu);
    lp_swap_slot **pp = &h->slots;
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, s->name) == 0) {
            pthread_mutex_unlock(&h->mu);
            pthread_mutex_destroy(&s->op_mu);
            free(s->module_path);
            free(s);
            return lp_error_set(err, LP_ERR_EXISTS, "slot %s: already declared", cfg->name);
        }
    }
    *pp = s; /* appended: the tick walks the list without holding the lock between slots */
    pthread_mutex_unlock(&h->mu);
    if (s->module_path)
        lp_swap_wake(h);
    *out = s;
    return LP_OK;
}

/* ---- probation ------------------------------------------------------------------- */

static void event_base(lp_swap_event *ev, lp_swap_event_kind kind, const lp_swap_slot *s,
                       const lp_swap_version *v, const char *other, const char *msg)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->slot = s->name;
    ev->version = v ? v->label : "";
    ev->other = other ? other : "";
    ev->path = v ? v->path : "";
    ev->message = msg;
    ev->baseline = s->baseline;
    ev->release = v ? v->release : 0;
}

static void version_stats(const lp_swap_version *v, lp_swap_stats *out)
{
    lp_swap_sum *sum = malloc(sizeof *sum);
    if (!sum) {
        memset(out, 0, sizeof *out);
        return;
    }
    lp_swap_sum_stats(v, sum);
    lp_swap_stats_of(sum, true, out); /* percentiles are 0 when nothing was timed */
    free(sum);
}

/* Finishes a crash the signal handler claimed (the pointer was swapped). */
static void finish_crash(lp_swap_slot *s, lp_swap_version *v)
{
    lp_swap_host *h = s->host;
    lp_swap_version *prev = v->prev;
    s->active = prev;
    s->probation = NULL;
    v->keep_mapped = true;
    v->prev = NULL;
    atomic_fetch_add(&s->rollbacks, 1);
    int sig = atomic_load(&v->crash_sig);
    uintptr_t pc = atomic_load(&v->crash_pc);
    lp_swap_event ev;
    char msg[LP_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg,
             "slot %s: version %s crashed on probation (%s at offset 0x%lx of %s, address %p); "
             "version %s is live again, %llu call(s) abandoned",
             s->name, v->label, lp_swap_signal_name(sig), (unsigned long)(pc - v->base), v->path,
             (void *)atomic_load(&v->crash_addr), prev ? prev->label : "(none)",
             (unsigned long long)atomic_load(&v->crash_calls));
    event_base(&ev, LP_SWAP_EV_ROLLED_BACK, s, v, prev ? prev->label : "", msg);
    ev.reason = LP_SWAP_REASON_CRASH;
    ev.signal = sig;
    ev.fault_offset = (uint64_t)(pc - v->base);
    ev.fault_address = (uint64_t)atomic_load(&v->crash_addr);
    ev.crashed_calls = atomic_load(&v->crash_calls);
    version_stats(v, &ev.stats);
    lp_swap_emit(h, &ev);
    lp_swap_report_queue(h, s, v, msg);
    lp_swap_retire(h, v);
}

/* Ends v's probation keeping it.  LP_ERR_STATE if it ended otherwise. */
static lp_status end_commit(lp_swap_slot *s, lp_swap_version *v, bool requested, lp_error *err)
{
    int expect = LP_SWAP_V_PROBATION;
    if (!atomic_compare_exchange_strong(&v->state, &expect, LP_SWAP_V_STABLE)) {
        if (expect == LP_SWAP_V_CRASHED)
            finish_crash(s, v);
        return lp_error_set(err, LP_ERR_STATE,
                            "slot %s: version %s is no longer on probation (it crashed)", s->name,
                            v->label);
    }
    __atomic_store_n(&v->head.flags, 0u, __ATOMIC_RELEASE);
    lp_swap_version *prev = v->prev;
    v->prev = NULL;
    s->probation = NULL;
    atomic_fetch_add(&s->commits, 1);
    lp_swap_event ev;
    lp_swap_stats stats;
    version_stats(v, &stats);
    char msg[LP_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg,
             "slot %s: version %s %s (%llu calls, %llu errors, p99 %llu ns); version %s retired",
             s->name, v->label, requested ? "kept on request" : "passed probation",
             (unsigned long long)stats.calls, (unsigned long long)stats.errors,
             (unsigned long long)stats.p99_ns, prev ? prev->label : "(none)");
    event_base(&ev, LP_SWAP_EV_COMMITTED, s, v, prev ? prev->label : "", msg);
    ev.stats = stats;
    lp_swap_emit(s->host, &ev);
    if (prev)
        lp_swap_retire(s->host, prev);
    return LP_OK;
}

lp_status lp_swap_end_rollback(lp_swap_slot *s, lp_swap_version *v, lp_swap_reason reason,
                               const char *why, lp_error *err)
{
    lp_swap_version *prev = v->prev;
    /* Hand the state back while the previous version receives no calls. */
    char handback[LP_ERROR_MSG_MAX] = "";
    if (v->mod->state_export && prev->mod->state_import) {
        lp_error he;
        lp_error_clear(&he);
        if (lp_swap_handover(s, v, prev, true, &he) == LP_OK)
            snprintf(handback, sizeof handback, "; its state was handed back");
        else
            snprintf(handback, sizeof handback, "; its state was not handed back: %s", he.msg);
    }
    int expect = LP_SWAP_V_PROBATION;
    if (!atomic_compare_exchange_strong(&v->state, &expect, LP_SWAP_V_ROLLED_BACK)) {
        if (expect == LP_SWAP_V_CRASHED)
            finish_crash(s, v);
        return lp_error_set(err, LP_ERR_STATE,
                            "slot %s: version %s is no longer on probation (it crashed)", s->name,
                            v->label);
    }
    __atomic_store_n(&s->head.cur, &prev->head, __ATOMIC_RELEASE);
    s->active = prev;
    s->probation = NULL;
    v->prev = NULL;
    atomic_fetch_add(&s->rollbacks, 1);
    lp_swap_event ev;
    char msg[LP_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, "slot %s: version %s rolled back: %s; version %s is live again%s",
             s->name, v->label, why, prev->label, handback);
    event_base(&ev, LP_SWAP_EV_ROLLED_BACK, s, v, prev->label, msg);
    ev.reason = reason;
    version_stats(v, &ev.stats);
    lp_swap_emit(s->host, &ev);
    /* A release the install went back from already is not reported. */
    if (reason != LP_SWAP_REASON_REQUESTED)
        lp_swap_report_queue(s->host, s, v, msg);
    lp_swap_retire(s->host, v);
    return LP_OK;
}

/* Judges v against the baseline; fills `why` and returns the reason to roll
 * back, or LP_SWAP_REASON_NONE. */
static lp_swap_reason judge(lp_swap_slot *s, lp_swap_version *v, char *why, size_t cap)
{
    unsigned f = __atomic_load_n(&v->head.flags, __ATOMIC_RELAXED);
    if (!(f & LP_SWAP_VF_MEASURE) || !v->stats)
        return LP_SWAP_REASON_NONE;
    const lp_swap_probation *p = &s->prob;
    lp_swap_sum *sum = malloc(sizeof *sum);
    if (!sum)
        return LP_SWAP_REASON_NONE;
    lp_swap_sum_stats(v, sum);
    lp_swap_reason r = LP_SWAP_REASON_NONE;
    const lp_swap_sum *b = s->baseline_sum;
    bool have_base = b && b->calls >= p->min_calls;
    if (sum->calls < p->min_calls)
        goto done;
    if (!(p->flags & LP_SWAP_PROBATION_NO_ERRORS)) {
        double base_rate = have_base ? (double)b->errors / (double)b->calls : 0.0;
        double rate = (double)sum->errors / (double)sum->calls;
        double limit = base_rate * p->error_factor + p->error_slack;
        if (rate > limit) {
            snprintf(why, cap,
                     "error rate %.2f%% (%llu of %llu calls) is over the limit %.2f%% (previous "
                     "version: %.2f%% of %llu calls)",
                     rate * 100.0, (unsigned long long)sum->errors,
                     (unsigned long long)sum->calls, limit * 100.0, base_rate * 100.0,
                     have_base ? (unsigned long long)b->calls : 0ull);
            r = LP_SWAP_REASON_ERROR_RATE;
            goto done;
        }
    }
    if ((f & LP_SWAP_VF_TIMED) && have_base) {
        uint64_t p99 = percentile(sum, 0.99), base99 = percentile(b, 0.99);
        if (base99 > 0) {
            double limit = (double)base99 * p->latency_factor + (double)p->latency_slack_ns;
            if ((double)p99 > limit) {
                snprintf(why, cap,
                         "p99 latency %llu ns over %llu calls is over the limit %.0f ns "
                         "(previous version: p99 %llu ns over %llu calls)",
                         (unsigned long long)p99, (unsigned long long)sum->calls, limit,
                         (unsigned long long)base99, (unsigned long long)b->calls);
                r = LP_SWAP_REASON_LATENCY;
            }
        }
    }
done:
    free(sum);
    return r;
}

void lp_swap_settle(lp_swap_slot *s, int64_t now_ms)
{
    lp_swap_version *v = s->probation;
    if (!v)
        return;
    int st = atomic_load(&v->state);
    if (st == LP_SWAP_V_CRASHED) {
        finish_crash(s, v);
        return;
    }
    if (st != LP_SWAP_V_PROBATION)
        return;
    char why[LP_ERROR_MSG_MAX / 2];
    lp_swap_reason r = judge(s, v, why, sizeof why);
    if (r != LP_SWAP_REASON_NONE) {
        lp_swap_end_rollback(s, v, r, why, NULL);
        return;
    }
    if (now_ms >= v->probation_end_ms)
        end_commit(s, v, false, NULL);
}

/* Only finishes a claimed crash (commit and rollback on request). */
static void settle_crash(lp_swap_slot *s)
{
    lp_swap_version *v = s->probation;
    if (v && atomic_load(&v->state) == LP_SWAP_V_CRASHED)
        finish_crash(s, v);
}

lp_status lp_swap_commit(lp_swap_slot *s, lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "commit: no slot");
    pthread_mutex_lock(&s->op_mu);
    settle_crash(s);
    lp_status st;
    if (!s->probation)
        st = lp_error_set(err, LP_ERR_STATE, "slot %s: no version is on probation", s->name);
    else
        st = end_commit(s, s->probation, true, err);
    pthread_mutex_unlock(&s->op_mu);
    lp_swap_reclaim_pass(s->host);
    lp_swap_deliver(s->host);
    return st;
}

lp_status lp_swap_rollback(lp_swap_slot *s, lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "rollback: no slot");
    pthread_mutex_lock(&s->op_mu);
    settle_crash(s);
    lp_status st;
    if (!s->probation)
        st = lp_error_set(err, LP_ERR_STATE, "slot %s: no version is on probation", s->name);
    else
        st = lp_swap_end_rollback(s, s->probation, LP_SWAP_REASON_REQUESTED, "requested", err);
    pthread_mutex_unlock(&s->op_mu);
    lp_swap_reclaim_pass(s->host);
    lp_swap_deliver(s->host);
    return st;
}

/* ---- update ------------------------------------------------------------------------ */

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Measures `old` for the baseline window (op_mu held, callers go on). */
static void measure_baseline(lp_swap_slot *s, lp_swap_version *old, bool timed)
{
    free(s->baseline_sum);
    s->baseline_sum = NULL;
    memset(&s->baseline, 0, sizeof s->baseline);
    if (!old->stats && !(old->stats = new_shards()))
        return;
    lp_swap_sum *before = malloc(sizeof *before), *after = malloc(sizeof *after);
    if (!before || !after) {
        free(before);
        free(after);
        return;
    }
    unsigned f = LP_SWAP_VF_MEASURE | (timed ? LP_SWAP_VF_TIMED : 0u);
    __atomic_store_n(&old->head.flags, f, __ATOMIC_RELEASE);
    lp_swap_sum_stats(old, before);
    sleep_ms(s->prob.baseline_ms);
    lp_swap_sum_stats(old, after);
    after->calls -= before->calls;
    after->errors -= before->errors;
    for (unsigned b = 0; b < LP_SWAP_HIST_BUCKETS; b++)
        after->hist[b] -= before->hist[b];
    free(before);
    s->baseline_sum = after;
    lp_swap_stats_of(after, timed, &s->baseline);
}

lp_status lp_swap_update(lp_swap_slot *s, const char *path, lp_error *err)
{
    return lp_swap_update_from(s, path, 0, err);
}

lp_status lp_swap_update_from(lp_swap_slot *s, const char *path, uint64_t release,
                              lp_error *err)
{
    if (!s)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "update: no slot");
    pthread_mutex_lock(&s->op_mu);
    lp_status st = lp_swap_update_locked(s, path, release, err);
    pthread_mutex_unlock(&s->op_mu);
    lp_swap_reclaim_pass(s->host);
    lp_swap_deliver(s->host);
    return st;
}

lp_status lp_swap_update_locked(lp_swap_slot *s, const char *path, uint64_t release,
                                lp_error *err)
{
    lp_error local;
    if (!err)
        err = &local;
    lp_error_clear(err);
    lp_swap_host *h = s->host;
    lp_swap_settle(s, lp_swap_now_ms());
    lp_status st;
    if (s->probation) {
        lp_swap_version *v = s->probation;
        int64_t left = v->probation_end_ms - lp_swap_now_ms();
        return lp_error_set(err, LP_ERR_STATE,
                            "slot %s: version %s is on probation for another %lld ms; commit or "
                            "roll it back first",
                            s->name, v->label, (long long)(left > 0 ? left : 0));
    }
    lp_swap_version *nv = NULL;
    st = lp_swap_load(s, path ? path : "", &nv, err);
    if (st)
        goto refused;
    nv->release = release;

    lp_swap_version *old = s->active;
    const lp_swap_probation *p = &s->prob;
    bool probation = old && !(p->flags & LP_SWAP_PROBATION_OFF);
    bool judge_err = probation && !(p->flags & LP_SWAP_PROBATION_NO_ERRORS);
    bool judge_lat = probation && !(p->flags & LP_SWAP_PROBATION_NO_LATENCY);
    if ((judge_err || judge_lat) && !(p->flags & LP_SWAP_PROBATION_NO_BASELINE)) {
        measure_baseline(s, old, judge_lat);
    } else {
        free(s->baseline_sum);
        s->baseline_sum = NULL;
        memset(&s->baseline, 0, sizeof s->baseline);
    }
    st = lp_swap_handover(s, old, nv, false, err);
    if (st) {
        lp_swap_version_free(nv);
        goto refused;
    }
    unsigned flags = 0;
    if (probation) {
        if (h->guard)
            flags |= LP_SWAP_VF_GUARD;
        if (judge_err || judge_lat) {
            flags |= LP_SWAP_VF_MEASURE;
            if (judge_lat)
                flags |= LP_SWAP_VF_TIMED;
            if (!(nv->stats = new_shards())) {
                lp_swap_version_free(nv);
                st = lp_error_set(err, LP_ERR_NOMEM, "%s: out of memory", path);
                goto refused;
            }
        }
        nv->prev = old;
        nv->probation_end_ms = lp_swap_now_ms() + (int64_t)p->window_ms;
        atomic_store(&nv->state, LP_SWAP_V_PROBATION);
    } else {
        atomic_store(&nv->state, LP_SWAP_V_STABLE);
    }
    nv->head.flags = flags;
    /* The swap: one release store; a call reads it once when it enters. */
    __atomic_store_n(&s->head.cur, &nv->head, __ATOMIC_RELEASE);
    s->active = nv;
    if (probation)
        s->probation = nv;
    if (old) {
        __atomic_store_n(&old->head.flags, 0u, __ATOMIC_RELEASE);
        if (!probation)
            lp_swap_retire(h, old);
    }
    atomic_fetch_add(&s->swaps, 1);
    {
        lp_swap_event ev;
        char msg[LP_ERROR_MSG_MAX];
        if (probation)
            snprintf(msg, sizeof msg,
                     "slot %s: version %s (%s, sha256 %s) is live, on probation for %u ms "
                     "against version %s",
                     s->name, nv->label, nv->path, nv->sha256, p->window_ms, old->label);
        else
            snprintf(msg, sizeof msg, "slot %s: version %s (%s, sha256 %s) is live%s%s",
                     s->name, nv->label, nv->path, nv->sha256, old ? "; retired version " : "",
                     old ? old->label : "");
        event_base(&ev, LP_SWAP_EV_SWAPPED, s, nv, old ? old->label : "", msg);
        lp_swap_emit(h, &ev);
    }
    return LP_OK;

refused:
    /* The running version may have been measured for a baseline: stop. */
    if (s->active)
        __atomic_store_n(&s->active->head.flags, 0u, __ATOMIC_RELEASE);
    atomic_fetch_add(&s->refusals, 1);
    lp_error_prefix(err, st, "slot %s", s->name);
    {
        lp_swap_event ev;
        event_base(&ev, LP_SWAP_EV_REFUSED, s, NULL, "", err->msg);
        ev.path = path ? path : "";
        lp_swap_emit(h, &ev);
    }
    return st;
}

/* ---- information ----------------------------------------------------------------- */

lp_status lp_swap_slot_get_info(lp_swap_slot *s, lp_swap_slot_info *out, lp_error *err)
{
    if (!s || !out)
        return lp_error_set(err, LP_ERR_INVALID_ARG, "slot info: no slot or output");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->op_mu);
    settle_crash(s);
    lp_swap_version *v = s->active;
    if (v) {
        out->state = s->probation ? LP_SWAP_SLOT_ON_PROBATION : LP_SWAP_SLOT_IS_STABLE;
        snprintf(out->version, sizeof out->version, "%s", v->label);
        snprintf(out->sha256, sizeof out->sha256, "%s", v->sha256);
        snprintf(out->path, sizeof out->path, "%s", v->path);
        out->release = v->release;
        if (s->probation && v->prev) {
            snprintf(out->previous, sizeof out->previous, "%s", v->prev->label);
            int64_t left = v->probation_end_ms - lp_swap_now_ms();
            out->probation_left_ms = left > 0 ? left : 0;
            version_stats(v, &out->probation_stats);
        }
    }
    out->baseline = s->baseline;
    out->swaps = atomic_load(&s->swaps);
    out->commits = atomic_load(&s->commits);
    out->rollbacks = atomic_load(&s->rollbacks);
    out->refusals = atomic_load(&s->refusals);
    out->loaded = atomic_load(&s->loaded);
    pthread_mutex_unlock(&s->op_mu);
    lp_swap_deliver(s->host);
    return LP_OK;
}
