// logs.h: `distil logs`, the drive-log commands (synth, inspect, validate,
// stats, load). The CLI (train/cmd/main.c) dispatches here.
#pragma once

// Takes the arguments after `logs`; returns the exit status (0 ok, 2 bad
// input, 1 failure).
int cmd_logs(int argc, char **argv);   // data/logs/cli.c
