// synth.h: the synthetic fleet generator (`distil logs synth`).
#pragma once

// `distil logs synth --out DIR --shards N --samples-per-shard M --seed S [--preset demo|...]`.
// argv excludes "synth". Returns the exit status.
int logs_synth_main(int argc, char **argv);
