// cli.h: the subcommands of ./distil. Each takes the arguments after its
// name and returns the process exit status (0 ok, 2 bad input, 1 failure).
#pragma once
#include "data/logs/logs.h"   // defines: cmd_logs (the drive-log commands live with the data layer)

#define DISTIL_VERSION "0.1.0"

int cmd_train(int argc, char **argv);     // train/cmd/train.c
int cmd_recipe(int argc, char **argv);    // train/cmd/recipe.c
int cmd_export(int argc, char **argv);    // train/cmd/export.c
int cmd_eval(int argc, char **argv);      // train/cmd/eval.c
int cmd_report(int argc, char **argv);    // train/cmd/report.c
int cmd_selftest(int argc, char **argv);  // train/cmd/selftest.c
