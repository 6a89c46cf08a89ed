// cmds.h: the `distil logs` subcommands (internal to data/). Each takes
// the arguments after its own name and returns the exit status.
#pragma once

int logs_inspect_main(int argc, char **argv);    // data/logs/inspect.c
int logs_validate_main(int argc, char **argv);   // data/logs/validate.c
int logs_stats_main(int argc, char **argv);      // data/logs/stats.c
int logs_load_main(int argc, char **argv);       // data/logs/load.c

// Parse `value` of option `flag` of `distil logs CMD` as an integer in
// [min, max]; prints one error line and returns -1 when it is not.
int logs_parse_int(const char *cmd, const char *flag, const char *value, long long min, long long max, long long *out);
// The value after argv[*i] (advancing *i), or NULL after printing an error.
const char *logs_option_value(const char *cmd, int argc, char **argv, int *i);
