// cli.h: the subcommands of ./distil. Each takes the arguments after its
// name and returns the process exit status (0 ok, 2 bad input, 1 failure).
#pragma once

#define DISTIL_VERSION "0.1.0"

int cmd_train(int argc, char **argv);     // train/train.c
int cmd_logs(int argc, char **argv);      // data/logs_cli.c
int cmd_recipe(int argc, char **argv);    // train/recipe_cli.c
int cmd_export(int argc, char **argv);    // train/export.c
int cmd_eval(int argc, char **argv);      // train/eval_cli.c
int cmd_report(int argc, char **argv);    // train/report.c
