/*
 * cmd_keygen.c — `livepush keygen`: makes a signing key.
 *
 *   livepush keygen [--type ed25519|ecdsa|rsa] --out FILE [--force]
 *
 * Writes FILE (the private key, unencrypted PKCS#8 PEM, mode 0600) and
 * FILE.pub.json (the public key as a TUF key object, compact JSON), each
 * atomically, and prints the key ID alone on stdout so scripts can capture
 * it.  Existing files are never overwritten without --force: a lost
 * private key cannot be made again.
 */
#include "cli/cli.h"
#include "core/file.h"
#include "livepush/key.h"
#include "livepush/tuf.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: livepush keygen [--type ed25519|ecdsa|rsa] --out FILE [--force]\n"
    "\n"
    "Generates a key pair and writes FILE (private key, PKCS#8 PEM, mode 0600)\n"
    "and FILE.pub.json (public key as a TUF key object).  Prints the key ID.\n"
    "\n"
    "  --type TYPE   ed25519 (default), ecdsa (P-256) or rsa (3072-bit, RSASSA-PSS)\n"
    "  --out FILE    where to write the private key\n"
    "  --force       overwrite FILE and FILE.pub.json if they exist\n"
    "\n"
    "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.\n";

int lp_cmd_keygen(int argc, char **argv)
{
    static const struct option lo[] = {{"type", required_argument, NULL, 't'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"force", no_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *type_name = "ed25519", *out = NULL;
    int force = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 't': type_name = optarg; break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(usage_text, stdout); return LP_EXIT_OK;
        default: fputs(usage_text, stderr); return LP_EXIT_USAGE;
        }
    }
    if (optind != argc || !out || !*out) {
        fprintf(stderr, "livepush keygen: %s\n\n%s",
                optind != argc ? "unexpected argument" : "--out is required", usage_text);
        return LP_EXIT_USAGE;
    }
    lp_error err;
    lp_error_clear(&err);
    lp_key_type type;
    if (lp_key_type_from_name(type_name, &type, &err)) {
        fprintf(stderr, "livepush keygen: %s\n\n%s", err.msg, usage_text);
        return LP_EXIT_USAGE;
    }
    size_t n = strlen(out) + sizeof ".pub.json";
    char *pub_path = malloc(n);
    if (!pub_path) {
        lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        return lp_cli_fail(&err, "keygen");
    }
    snprintf(pub_path, n, "%s.pub.json", out);
    if (!force && (lp_file_exists(out) || lp_file_exists(pub_path))) {
        lp_error_set(&err, LP_ERR_EXISTS, "%s or %s already exists (use --force to replace)", out,
                     pub_path);
        free(pub_path);
        return lp_cli_fail(&err, "keygen");
    }
    lp_key *key = NULL;
    char *json = NULL;
    char keyid[65];
    lp_status st = lp_key_generate(&key, type, &err);
    if (!st)
        st = lp_tuf_key_to_json(key, &json, keyid, &err);
    if (!st)
        st = lp_key_save_private_file(key, out, &err);
    if (!st) {
        size_t jl = strlen(json);
        char *text = malloc(jl + 2);
        if (!text) {
            st = lp_error_set(&err, LP_ERR_NOMEM, "out of memory");
        } else {
            memcpy(text, json, jl);
            text[jl] = '\n';
            st = lp_file_write_atomic(pub_path, text, jl + 1, 0644, &err);
            free(text);
        }
    }
    int rc = LP_EXIT_OK;
    if (st) {
        rc = lp_cli_fail(&err, "keygen");
    } else {
        printf("%s\n", keyid);
        fprintf(stderr, "livepush keygen: %s key written to %s (private, mode 0600) and %s\n",
                lp_key_type_name(type), out, pub_path);
    }
    free(json);
    free(pub_path);
    lp_key_free(key);
    return rc;
}
