// progress.h: what a long command shows while it works.
//
// On a terminal (stderr is a tty) one live line on stderr, redrawn in
// place; otherwise plain lines on stdout, so that a log file or a pipe gets
// them too. A command's other output goes through progress_break first,
// which ends a live line so that nothing is written over it.
#pragma once
#include <stddef.h>

typedef struct Progress {
    const char *what;        // "evaluating", ...
    long total;              // units of work (0: unknown)
    int quarters;            // piped: quarters of the work already reported
    double t0;               // when it started (progress_now)
    int tty, live;           // stderr is a terminal; a live line is on it now
} Progress;

double progress_now(void);   // monotonic seconds
// "1h02m", "2m05s" or "12s".
void progress_duration(double seconds, char *buf, size_t n);

// Start a unit of work of `total` steps (tty: decided here, from stderr).
void progress_start(Progress *p, const char *what, long total);
// `done` of the total: tty, the live line "WHAT: done/total UNIT (pct), ETA";
// piped, a line at each quarter of the work.
void progress_update(Progress *p, long done, const char *unit);
// A line of the command's own, either way: on a tty it replaces the live
// line; piped it is printed as is. (The training loop's step lines.)
void progress_line(Progress *p, const char *line);
// End a live line (a newline on stderr) before other output.
void progress_break(Progress *p);
