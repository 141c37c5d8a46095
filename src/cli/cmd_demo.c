/*
 * cmd_demo.c — `livepush demo`: the trust core end to end on one machine.
 *
 *   livepush demo [--dir DIR]
 *
 * Plays both sides in one folder (default: a new $TMPDIR/livepush-demo-XXXXXX,
 * left in place for inspection):
 *   publisher  makes four ed25519 keys (keys/), a repository (repo/) and a
 *              first release of a small text file, hello.txt;
 *   device     trusts repo/metadata/1.root.json, refreshes from the
 *              repository through file:// URLs (the same client and fetcher
 *              that speak HTTP), finds, downloads and verifies hello.txt;
 *   publisher  releases a second version; the device refreshes and moves on;
 *   attacker   flips one byte of the served file; the device refuses it.
 * Every step prints what happened; the exit code is 0 only when each step
 * behaved as expected (the tampered download must be refused).
 */
#include "cli/cli.h"
#include "core/file.h"
#include "livepush/key.h"
#include "livepush/tuf.h"
#include "livepush/tuf_repo.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: livepush demo [--dir DIR]\n"
    "\n"
    "Runs the trust core end to end in DIR (default: a new folder under $TMPDIR):\n"
    "keys, a TUF repository, a client that refreshes and verifies a download over\n"
    "file:// URLs, a second release, and a tampered file that the client refuses.\n"
    "The folder is left in place; 'livepush repo show DIR/repo' describes it.\n"
    "\n"
    "Exit codes: 0 every step behaved as expected, 1 a step did not, 2 usage error.\n";

static const char *const roles[4] = {"root", "targets", "snapshot", "timestamp"};

typedef struct demo {
    char dir[PATH_MAX];
    char repo[PATH_MAX + 8], device[PATH_MAX + 8], client[PATH_MAX + 32], murl[3 * PATH_MAX + 32],
        turl[3 * PATH_MAX + 32];
    lp_key *keys[4];
    lp_tuf_repo *r;
} demo;

/* file:// URL of an absolute path, percent-encoding all but unreserved
 * characters and '/'. */
static void file_url(const char *path, const char *suffix, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "file://");
    for (const unsigned char *p = (const unsigned char *)path; *p && o + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p))
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
    }
    snprintf(out + o, cap - o, "%s", suffix);
}

static lp_status write_text(const char *dir, const char *name, const char *text, char *path,
                            size_t cap, lp_error *err)
{
    snprintf(path, cap, "%s/%s", dir, name);
    return lp_file_write_atomic(path, text, strlen(text), 0644, err);
}

static lp_status make_keys(demo *d, lp_error *err)
{
    char keydir[PATH_MAX + 8];
    snprintf(keydir, sizeof keydir, "%s/keys", d->dir);
    lp_status st = lp_file_mkdirs(keydir, 0700, err);
    for (int i = 0; i < 4 && !st; i++) {
        char path[PATH_MAX + 32], id[65], *json = NULL;
        snprintf(path, sizeof path, "%s/%s.pem", keydir, roles[i]);
        if ((st = lp_key_generate(&d->keys[i], LP_KEY_ED25519, err)) ||
            (st = lp_key_save_private_file(d->keys[i], path, err)) ||
            (st = lp_tuf_key_to_json(d->keys[i], &json, id, err)))
            break;
        char pub[PATH_MAX + 48];
        snprintf(pub, sizeof pub, "%s/%s.pem.pub.json", keydir, roles[i]);
        st = lp_file_write_atomic(pub, json, strlen(json), 0644, err);
        free(json);
        printf("    %-9s key %s  (%s)\n", roles[i], id, path);
    }
    return st;
}

static lp_status publish(demo *d, lp_error *err)
{
    lp_status st = lp_tuf_repo_publish(d->r, (const lp_key *const *)d->keys, 4, err);
    if (!st)
        printf("    published: root v%llu, timestamp v%llu, snapshot v%llu, targets v%llu\n",
               (unsigned long long)lp_tuf_repo_version(d->r, "root"),
               (unsigned long long)lp_tuf_repo_version(d->r, "timestamp"),
               (unsigned long long)lp_tuf_repo_version(d->r, "snapshot"),
               (unsigned long long)lp_tuf_repo_version(d->r, "targets"));
    return st;
}

static lp_status release(demo *d, const char *version, lp_error *err)
{
    char text[128], custom[64], path[PATH_MAX + 32];
    snprintf(text, sizeof text, "Hello from livepush, release %s.\n", version);
    snprintf(custom, sizeof custom, "{\"version\":\"%s\"}", version);
    lp_status st = write_text(d->dir, "hello.txt", text, path, sizeof path, err);
    if (!st)
        st = lp_tuf_repo_add_target_file(d->r, "targets", "hello.txt", path, custom,
                                         LP_TUF_HASH_SHA256_SHA512, err);
    if (!st)
        printf("    target hello.txt = %s", text);
    return st ? st : publish(d, err);
}

/* Device side: refresh, find, download and verify hello.txt into
 * device/<dest_name>.  With `served` non-NULL the served file's path is
 * returned there. */
static lp_status device_update(demo *d, const char *dest_name, char *served, size_t cap,
                               lp_error *err)
{
    lp_tuf_client_config cfg = {.metadata_dir = d->client, .metadata_url = d->murl,
                                .targets_url = d->turl};
    lp_tuf_client *c = NULL;
    lp_tuf_target *t = NULL;
    lp_tuf_step step = LP_TUF_STEP_NONE;
    lp_status st = lp_tuf_client_open(&c, &cfg, err);
    if (!st && (st = lp_tuf_client_refresh(c, &step, err)))
        lp_error_prefix(err, st, "refresh failed at the %s step", lp_tuf_step_name(step));
    if (!st) {
        lp_tuf_versions v;
        lp_tuf_client_versions(c, &v);
        printf("    refreshed: trusts root v%llu, timestamp v%llu, snapshot v%llu, targets v%llu\n",
               (unsigned long long)v.root, (unsigned long long)v.timestamp,
               (unsigned long long)v.snapshot, (unsigned long long)v.targets);
        st = lp_tuf_client_find_target(c, "hello.txt", &t, err);
    }
    if (!st) {
        const char *custom = lp_tuf_target_custom_json(t);
        printf("    found hello.txt in role %s: %llu bytes, sha256 %s, custom %s\n",
               lp_tuf_target_role(t), (unsigned long long)lp_tuf_target_length(t),
               lp_tuf_target_sha256(t), custom ? custom : "-");
        if (served)
            snprintf(served, cap, "%s/targets/%s.hello.txt", d->repo, lp_tuf_target_sha256(t));
        char dest[PATH_MAX + 64];
        snprintf(dest, sizeof dest, "%s/%s", d->device, dest_name);
        unlink(dest);
        st = lp_tuf_client_download_target(c, t, dest, err);
        if (!st) {
            uint8_t *data;
            size_t len;
            if (!(st = lp_file_read(dest, 4096, &data, &len, err))) {
                printf("    downloaded and verified (length, sha256, sha512) -> %s: %s", dest,
                       (char *)data);
                free(data);
            }
        } else if (lp_file_exists(dest)) {
            st = lp_error_set(err, LP_ERR_STATE, "a refused download left %s behind", dest);
        }
    }
    lp_tuf_target_free(t);
    lp_tuf_client_free(c);
    return st;
}

/* Flips the first byte of `path` in place (atomically) or restores it. */
static lp_status flip_first_byte(const char *path, lp_error *err)
{
    uint8_t *data;
    size_t len;
    lp_status st = lp_file_read(path, 1u << 20, &data, &len, err);
    if (st)
        return st;
    if (len)
        data[0] ^= 0x20;
    st = lp_file_write_atomic(path, data, len, 0644, err);
    free(data);
    return st;
}

static int run(demo *d)
{
    lp_error err;
    lp_error_clear(&err);
    char root_path[PATH_MAX + 64], served[PATH_MAX + 128];
    printf("livepush demo in %s\n\n[1] publisher: signing keys (ed25519)\n", d->dir);
    if (make_keys(d, &err))
        return lp_cli_fail(&err, "demo: keys");
    printf("\n[2] publisher: repository %s, first release\n", d->repo);
    if (lp_tuf_repo_create(&d->r, d->repo, &err))
        return lp_cli_fail(&err, "demo: create repository");
    for (int i = 0; i < 4; i++)
        if (lp_tuf_repo_add_key(d->r, roles[i], d->keys[i], &err))
            return lp_cli_fail(&err, "demo: add key");
    if (release(d, "1.0.0", &err))
        return lp_cli_fail(&err, "demo: first release");

    snprintf(root_path, sizeof root_path, "%s/metadata/1.root.json", d->repo);
    printf("\n[3] device: trusts %s, updates from %s\n", root_path, d->murl);
    if (lp_tuf_init_trusted_root(d->client, root_path, &err))
        return lp_cli_fail(&err, "demo: install trusted root");
    if (device_update(d, "hello.txt", NULL, 0, &err))
        return lp_cli_fail(&err, "demo: device update to release 1");

    printf("\n[4] publisher: second release\n");
    if (release(d, "2.0.0", &err))
        return lp_cli_fail(&err, "demo: second release");
    printf("\n[5] device: refresh moves to the new versions\n");
    if (device_update(d, "hello.txt", served, sizeof served, &err))
        return lp_cli_fail(&err, "demo: device update to release 2");

    printf("\n[6] attacker: flips one byte of the served file %s\n", served);
    if (flip_first_byte(served, &err))
        return lp_cli_fail(&err, "demo: tamper");
    lp_status st = device_update(d, "hello-tampered.txt", NULL, 0, &err);
    lp_error restore_err;
    lp_status rst = flip_first_byte(served, &restore_err);
    if (st == LP_ERR_HASH_MISMATCH) {
        printf("    refused, as it must be: %s\n"
               "    nothing was written; the device keeps its verified release 2\n",
               err.msg);
    } else {
        if (!st)
            lp_error_set(&err, LP_ERR_STATE, "the tampered file was accepted");
        return lp_cli_fail(&err, "demo: tampered download");
    }
    if (rst)
        return lp_cli_fail(&restore_err, "demo: restore the served file");
    printf("    (served file restored)\n\nevery step behaved as expected; files left in %s\n",
           d->dir);
    return LP_EXIT_OK;
}

int lp_cmd_demo(int argc, char **argv)
{
    static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *dir = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'd': dir = optarg; break;
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        default: fputs(usage_text, stderr); return LP_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "livepush demo: unexpected argument '%s'\n\n%s", argv[optind], usage_text);
        return LP_EXIT_USAGE;
    }
    demo *d = calloc(1, sizeof *d);
    lp_error err;
    lp_error_clear(&err);
    if (!d) {
        lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        return lp_cli_fail(&err, "demo");
    }
    char made[PATH_MAX];
    if (dir) {
        if (lp_file_mkdirs(dir, 0755, &err)) {
            free(d);
            return lp_cli_fail(&err, "demo");
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(made, sizeof made, "%s/livepush-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(made)) {
            lp_error_set(&err, LP_ERR_IO, "mkdtemp %s: %s", made, strerror(errno));
            free(d);
            return lp_cli_fail(&err, "demo");
        }
        dir = made;
    }
    int rc;
    if (!realpath(dir, d->dir)) {
        lp_error_set(&err, LP_ERR_IO, "realpath %s: %s", dir, strerror(errno));
        rc = lp_cli_fail(&err, "demo");
    } else {
        snprintf(d->repo, sizeof d->repo, "%s/repo", d->dir);
        snprintf(d->device, sizeof d->device, "%s/device", d->dir);
        snprintf(d->client, sizeof d->client, "%s/metadata", d->device);
        file_url(d->repo, "/metadata", d->murl, sizeof d->murl);
        file_url(d->repo, "/targets", d->turl, sizeof d->turl);
        rc = run(d);
    }
    lp_tuf_repo_free(d->r);
    for (int i = 0; i < 4; i++)
        lp_key_free(d->keys[i]);
    free(d);
    return rc;
}
