/*
 * main_delta.c — entry point of livepush-delta, the delta engine as a tool of
 * its own: `livepush-delta make|apply|info|tree ...` is `livepush delta
 * make|apply|info|tree ...` (src/cli/cmd_delta.c, cmd_delta_tree.c), with the
 * same options and output.  It is linked with --as-needed and uses no network,
 * database or archive code, so it loads only libcrypto, zstd, divsufsort,
 * jansson and libc: a build machine or a pipeline can make and check deltas
 * without the rest of livepush, and a command starts in a few milliseconds.
 */
#include "cli/cli.h"

/* The dispatcher hands a command its own name as argv[0]; lp_cmd_delta wants
 * the subcommand in argv[1], so it gets the slot before (the program's name). */
static int sub(int argc, char **argv)
{
    return lp_cmd_delta(argc + 1, argv - 1);
}

/* The commands' own usage texts are those of `livepush delta`, which these
 * are: the descriptions say so. */
static const lp_cli_command commands[] = {
    {"make", sub, "make a delta from an old and a new file (= livepush delta make)"},
    {"apply", sub, "rebuild the new file from the old one and a delta (= livepush delta apply)"},
    {"info", sub, "show a delta's header (= livepush delta info)"},
    {"tree", sub, "the deltas of a whole folder, tree make|apply (= livepush delta tree)"},
};

int main(int argc, char **argv)
{
    return lp_cli_dispatch("livepush-delta", commands, sizeof commands / sizeof commands[0],
                           argc, argv);
}
