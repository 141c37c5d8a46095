/*
 * cmd_repo.h — the parts of `livepush repo` that live in their own files.
 */
#ifndef LP_CLI_CMD_REPO_H
#define LP_CLI_CMD_REPO_H

/* `repo show`: prints the repository in DIR as text, or as JSON. */
int lp_cli_repo_show(const char *dir, int json);

#endif
