/*
 * test_agent_state.c — the install root's layout and state.json: what the
 * first open creates, a device id made once and kept, the state round trip,
 * damaged state.json and device-id refused with the file and field named
 * (and left as they were), and the crash_at setting checked against the
 * table of crash points.
 */
#include "agenttest.h"
#include "testutil.h"

#include "agent/agent.h"
#include "core/file.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

typedef struct fixture {
    char *dir;
    char *root;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lp_test_tmpdir("agent-state");
    f->root = lp_test_join(f->dir, "root");
    *state = f;
    return f->dir ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lp_test_rmtree(f->dir);
    free(f->root);
    free(f->dir);
    free(f);
    return 0;
}

static char *rpath(const fixture *f, const char *rel)
{
    return lp_test_join(f->root, rel);
}

static void test_layout_and_device_id(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    static const char *const dirs[] = {"releases", ".livepush", ".livepush/manifests",
                                       ".livepush/staging", ".livepush/trash"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *p = rpath(f, dirs[i]);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        free(p);
    }
    char *sp = rpath(f, ".livepush");
    struct stat sb;
    assert_int_equal(stat(sp, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    free(sp);
    char id[33];
    snprintf(id, sizeof id, "%s", lp_updater_device_id(u));
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    char *st = rpath(f, ".livepush/state.json");
    assert_true(lp_file_exists(st));
    lp_updater_status s;
    lp_error err;
    assert_int_equal(lp_updater_status_get(u, &s, &err), LP_OK);
    assert_int_equal(s.current, 0);
    assert_int_equal(s.release_count, 0);
    assert_false(s.on_probation);
    assert_null(s.last_error);
    lp_updater_status_free(&s);
    assert_int_equal(lp_updater_rollback(u, 0, NULL, &err), LP_ERR_STATE);
    assert_int_equal(lp_updater_mark_healthy(u, 0, &err), LP_ERR_STATE);
    lp_updater_close(u);

    /* Kept across opens. */
    u = agt_open(&cfg);
    assert_string_equal(lp_updater_device_id(u), id);
    assert_non_null(strstr(lp_updater_root(u), "root"));
    assert_int_equal(lp_updater_root(u)[0], '/');
    lp_updater_close(u);
    free(st);
}

/* A full state, round trip through the text form. */
static void test_state_round_trip(void **state)
{
    (void)state;
    lp_agent_state s;
    lp_agent_state_init(&s);
    lp_error err;
    s.current = 7;
    s.previous = 5;
    s.has_pending = true;
    s.pending = (lp_agent_pending){7, 1700000000, 2, 600, 3};
    s.sw = (lp_agent_switch){LP_SWITCH_ROLLBACK, 7, 5, 1700000100, strdup("why \"not\"\n")};
    assert_int_equal(lp_agent_state_add_release(&s, 5, "v5", 1690000000, &err), LP_OK);
    assert_int_equal(lp_agent_state_add_release(&s, 7, "v7 \xc3\xa9", 1700000000, &err), LP_OK);
    assert_int_equal(lp_agent_state_add_bad(&s, 6, "crashed", 1695000000, &err), LP_OK);
    s.post_update_due = 7;
    s.last_check = 1700000200;
    assert_int_equal(lp_agent_state_set_error(&s, "boom", 1700000300, &err), LP_OK);
    char *text;
    size_t len;
    assert_int_equal(lp_agent_state_format(&s, &text, &len, &err), LP_OK);
    lp_agent_state back;
    assert_int_equal(lp_agent_state_parse(text, len, "state.json", &back, &err), LP_OK);
    char *text2;
    size_t len2;
    assert_int_equal(lp_agent_state_format(&back, &text2, &len2, &err), LP_OK);
    assert_string_equal(text, text2);
    assert_int_equal(back.current, 7);
    assert_int_equal(back.pending.launches, 2);
    assert_int_equal(back.sw.op, LP_SWITCH_ROLLBACK);
    assert_string_equal(back.sw.reason, "why \"not\"\n");
    assert_string_equal(back.releases[1].version, "v7 \xc3\xa9");
    assert_string_equal(back.bad[0].reason, "crashed");
    assert_int_equal(back.post_update_due, 7);
    assert_int_equal(back.last_check, 1700000200);
    assert_string_equal(back.last_error, "boom");
    free(text);
    free(text2);
    lp_agent_state_free(&s);
    lp_agent_state_free(&back);
}

#define OK_STATE(pending, releases)                                                    \
    "{\"format\":1,\"current\":null,\"previous\":null,\"pending\":" pending            \
    ",\"switch\":null,\"post_update_due\":null,\"releases\":" releases               \
    ",\"bad\":[],\"last_check\":null,\"last_error\":null}"

typedef struct damaged {
    const char *text;
    lp_status code;
    const char *needle;
} damaged;

static void test_damaged_state(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg); /* creates the layout */
    assert_non_null(u);
    lp_updater_close(u);
    static const damaged cases[] = {
        {"not json at all", LP_ERR_MALFORMED, "state.json"},
        {"{\"format\":1,", LP_ERR_MALFORMED, "state.json"},
        {"[]", LP_ERR_MALFORMED, "expected a JSON object"},
        {OK_STATE("{\"id\":\"x\",\"since\":1,\"launches\":0,\"window_s\":60,\"max_launches\":3}",
                  "[]"),
         LP_ERR_MALFORMED, "pending.id: expected an integer"},
        {OK_STATE("{\"id\":1,\"since\":1,\"launches\":-1,\"window_s\":60,\"max_launches\":3}",
                  "[]"),
         LP_ERR_MALFORMED, "pending.launches: -1 is out of range"},
        {OK_STATE("{\"id\":1,\"since\":1,\"launches\":0,\"window_s\":60}", "[]"),
         LP_ERR_MALFORMED, "pending.max_launches: missing"},
        {OK_STATE("null", "[{\"id\":1,\"version\":5,\"installed_at\":1}]"), LP_ERR_MALFORMED,
         "releases[0].version: expected a string"},
        {OK_STATE("null", "[{\"id\":1,\"version\":\"a\",\"installed_at\":1},"
                          "{\"id\":1,\"version\":\"b\",\"installed_at\":2}]"),
         LP_ERR_MALFORMED, "releases[1].id: duplicate id"},
        {OK_STATE("null", "[{\"id\":1,\"version\":\"a\",\"installed_at\":1,\"x\":0}]"),
         LP_ERR_MALFORMED, "releases[0].x: unknown field"},
        {OK_STATE("null", "{}"), LP_ERR_MALFORMED, "releases: expected an array"},
        {"{\"format\":1,\"current\":null,\"previous\":null,\"pending\":null,\"switch\":null,"
         "\"post_update_due\":null,\"releases\":[],\"last_check\":null,\"last_error\":null}",
         LP_ERR_MALFORMED, "bad: missing"},
        {"{\"format\":1,\"current\":null,\"previous\":null,\"pending\":null,\"switch\":null,"
         "\"post_update_due\":null,\"releases\":[],\"bad\":[],\"last_check\":null,"
         "\"last_error\":null,\"extra\":1}",
         LP_ERR_MALFORMED, "extra: unknown field"},
        {"{\"format\":2,\"current\":null}", LP_ERR_UNSUPPORTED, "format: 2 is not supported"},
        {"{\"format\":1,\"current\":0,\"previous\":null,\"pending\":null,\"switch\":null,"
         "\"post_update_due\":null,\"releases\":[],\"bad\":[],\"last_check\":null,"
         "\"last_error\":null}",
         LP_ERR_MALFORMED, "current: 0 is out of range"},
        {"{\"format\":1,\"format\":1}", LP_ERR_MALFORMED, "state.json"},
        {"{\"format\":1,\"current\":null,\"previous\":null,\"pending\":null,"
         "\"switch\":{\"op\":\"sideways\",\"from\":1,\"to\":2,\"at\":0,\"reason\":null},"
         "\"post_update_due\":null,"
         "\"releases\":[],\"bad\":[],\"last_check\":null,\"last_error\":null}",
         LP_ERR_MALFORMED, "switch.op: expected \"update\" or \"rollback\""},
    };
    char *path = rpath(f, ".livepush/state.json");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(lp_test_write_str(path, cases[i].text), 0);
        lp_error err;
        lp_updater *v = NULL;
        lp_status st = lp_updater_open(&cfg, &v, &err);
        if (st != cases[i].code || !strstr(err.msg, cases[i].needle) ||
            !strstr(err.msg, path))
            fail_msg("case %zu: got %s \"%s\", expected %s with \"%s\"", i, lp_status_name(st),
                     err.msg, lp_status_name(cases[i].code), cases[i].needle);
        assert_null(v);
        char *now = (char *)lp_test_read_file(path, NULL);
        assert_string_equal(now, cases[i].text); /* never rewritten */
        free(now);
    }
    /* Too large. */
    size_t big = LP_AGENT_STATE_MAX_BYTES + 10;
    char *text = malloc(big);
    memset(text, ' ', big);
    assert_int_equal(lp_test_write_file(path, text, big), 0);
    free(text);
    lp_error err;
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_TOO_LARGE);

    /* A good one opens again. */
    assert_int_equal(lp_test_write_str(path, OK_STATE("null", "[]")), 0);
    u = agt_open(&cfg);
    assert_non_null(u);
    lp_updater_close(u);
    free(path);
}

static void test_damaged_device_id(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u = agt_open(&cfg);
    assert_non_null(u);
    lp_updater_close(u);
    char *path = rpath(f, ".livepush/device-id");
    static const char *const bad[] = {"", "xyz\n", "0123456789ABCDEF0123456789abcdef\n",
                                      "0123456789abcdef0123456789abcdef0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lp_test_write_str(path, bad[i]), 0);
        lp_error err;
        assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_MALFORMED);
        assert_non_null(strstr(err.msg, "device-id"));
        assert_non_null(strstr(err.msg, "32 lower-case hex digits"));
    }
    assert_int_equal(lp_test_write_str(path, "0123456789abcdef0123456789abcdef\n"), 0);
    u = agt_open(&cfg);
    assert_non_null(u);
    assert_string_equal(lp_updater_device_id(u), "0123456789abcdef0123456789abcdef");
    lp_updater_close(u);
    free(path);
}

static void test_config_checks(void **state)
{
    fixture *f = *state;
    lp_updater_config cfg = agt_config(f->root);
    lp_updater *u;
    lp_error err;
    cfg.crash_at = "no-such-point";
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "no such crash point"));
    cfg.crash_at = "stage:begin@zero";
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_INVALID_ARG);
    cfg.crash_at = "stage:begin@2";
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_OK);
    lp_updater_close(u);
    cfg.crash_at = NULL;
    cfg.probation_window_s = -1;
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_INVALID_ARG);
    cfg.probation_window_s = 0;
    cfg.hook_output_max = LP_UPDATER_MAX_HOOK_OUTPUT + 1;
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_INVALID_ARG);
    cfg = agt_config(NULL);
    assert_int_equal(lp_updater_open(&cfg, &u, &err), LP_ERR_INVALID_ARG);
    assert_int_equal(lp_updater_open(NULL, &u, &err), LP_ERR_INVALID_ARG);

    /* Every crash point in the table has a unique name. */
    size_t n;
    const lp_crash_point_info *pts = lp_agent_crash_points(&n);
    assert_true(n > 20);
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            assert_string_not_equal(pts[i].name, pts[k].name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout_and_device_id, setup, teardown),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test_setup_teardown(test_damaged_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_device_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_checks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
