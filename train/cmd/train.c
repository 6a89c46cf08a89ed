// train.c: `distil train RECIPE [--out RUN_DIR] [--max-steps N] [--resume [CKPT_DIR]] [--set k=v ...]`:
// the run directory, the step loop (train/core/step.c does each step), progress,
// evaluations, checkpoints (train/ckpt/checkpoint.c) and the metrics files.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "kernels/cpu/gemm_bf16.h"   // defines: cpu_gemm_path, cpu_gemm_thread_invariant
#include "train/ckpt/checkpoint.h"  // defines: checkpoint_save, checkpoint_resolve, checkpoint_load, metrics_rewind
#include "train/cmd/cli.h"
#include "train/core/evaluate.h"    // defines: evaluate, fit_ego_only, EvalResult
#include "train/formats/fsutil.h"      // defines: fs_mkdir_p, fs_lock
#include "train/formats/json_io.h"     // defines: json_pack, jsonio_dump, jsonio_write_file
#include "train/core/state.h"     // defines: TrainState, train_step, train_state_open_on
#include "train/cmd/train_log.h"      // defines: TrainLog, train_log_*
#include "train/formats/safetensors.h"   // defines: st_open, st_meta
#include "train/selftest/selftest.h"   // defines: selftest_pick_device

#define EGO_ONLY_FIT_SAMPLES 4096



static void usage(FILE *f) {
    fprintf(f, "usage: distil train RECIPE [--out RUN_DIR] [--max-steps N] [--resume [CKPT_DIR]] [--set section.key=value ...]\n"
               "  Trains the student the recipe describes; writes RUN_DIR (default runs/<recipe name>):\n"
               "  recipe.resolved.yaml, metrics.jsonl, vocab.json, eval.json, checkpoints/.\n"
               "  --resume goes on from RUN_DIR/checkpoints/latest, or from CKPT_DIR. See docs/cli.md.\n");
}

// ---- one writer per run directory ----------------------------------------------

// Rank 0 holds RUN_DIR/train.lock for the run's life (the descriptor is never
// closed). A lock left by a killed run is free again, since the kernel drops
// it with the process: a resume takes it, and sweeps what that run's
// interrupted saves left (docs/checkpoints.md).
static int take_run_dir(const char *run_dir) {
    char path[1200], holder[256];
    snprintf(path, sizeof path, "%s/train.lock", run_dir);
    if (fs_lock(path, holder, sizeof holder) >= 0) {
        checkpoint_sweep(run_dir);
        return 0;
    }
    if (errno == EWOULDBLOCK)
        fprintf(stderr, "distil: error: %s: another distil train is writing this run directory (%s holds %s); wait for "
                "it to end, or train into another --out\n", run_dir, holder[0] ? holder : "a process", path);
    else
        fprintf(stderr, "distil: error: %s: cannot lock the run directory: %s\n", path, strerror(errno));
    return 2;
}

// ---- stopping on a signal ----------------------------------------------------

// SIGTERM (a scheduler's, kill's), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's
// --signal=USR1@120) ask the run to stop: the step in progress finishes, its
// checkpoint is written, and the process exits with 128 + the signal after
// one line saying how to go on (docs/checkpoints.md). The step's all-reduce
// carries every rank's request, so under mpirun all stop after the same
// step. A second SIGINT aborts at once.
static atomic_int stop_signal;   // the first stop signal received, 0 before
static int stop_announce;        // this process says so on stderr (rank 0)

static void on_stop_signal(int sig) {
    int none = 0;
    if (!atomic_compare_exchange_strong(&stop_signal, &none, sig)) {
        if (sig == SIGINT) {   // the second: abort now, as Ctrl-C does
            signal(SIGINT, SIG_DFL);
            raise(SIGINT);
        }
        return;
    }
    if (stop_announce) {
        static const char msg[] = "\ndistil: stopping after this step to write a checkpoint (Ctrl-C again aborts)\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
    }
}

static void catch_stop_signals(int root) {
    stop_announce = root;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

typedef struct TrainArgs {
    const char *recipe, *out;
    long max_steps;
    int resume;                // --resume given
    const char *resume_from;   // its CKPT_DIR, or NULL: RUN_DIR's latest checkpoint
    char *sets[64];
    int n_sets;
} TrainArgs;

static int parse_args(int argc, char **argv, TrainArgs *a) {
    memset(a, 0, sizeof *a);
    a->max_steps = -1;
    for (int i = 0; i < argc; i++) {
        const char *value;
        int set = recipe_arg_set(argc, argv, &i, &value);
        if (set < 0) return 2;
        if (set) {
            if (a->n_sets == 64) { fprintf(stderr, "distil: error: more than 64 --set\n"); return 2; }
            a->sets[a->n_sets++] = (char *)value;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            a->out = argv[++i];
        } else if (!strcmp(argv[i], "--max-steps") && i + 1 < argc) {
            char *end;
            a->max_steps = strtol(argv[++i], &end, 10);
            if (*end || a->max_steps < 0) { fprintf(stderr, "distil: error: --max-steps: expected a step count, got '%s'\n", argv[i]); return 2; }
        } else if (!strcmp(argv[i], "--resume")) {
            // The directory is optional; the recipe, a file, is never taken for it.
            struct stat st;
            a->resume = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-' && !(stat(argv[i + 1], &st) == 0 && S_ISREG(st.st_mode)))
                a->resume_from = argv[++i];
        } else if (!strncmp(argv[i], "--resume=", 9)) {
            a->resume = 1;
            a->resume_from = argv[i] + 9;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "distil: error: train: unknown option '%s'; see distil train --help\n", argv[i]);
            return 2;
        } else if (!a->recipe) {
            a->recipe = argv[i];
        } else {
            fprintf(stderr, "distil: error: train: one recipe only, got '%s' too\n", argv[i]);
            return 2;
        }
    }
    if (!a->recipe) { usage(stderr); return 2; }
    return 0;
}

static double mb(size_t bytes) { return (double)bytes / 1e6; }

// The planned bytes of the step (autograd/plan.h): what the arenas hold.
static void print_memory_plan(const TrainState *ts) {
    const Graph *g = ts->model.g;
    const PlanStats *p = &g->plan;
    printf("memory plan: parameters %.1f MB, gradients %.1f MB, optimizer state %.1f MB, activations %.1f MB and "
           "activation gradients %.1f MB at their peaks, in one arena of %.1f MB with the inputs (%.1f MB without "
           "reuse; %d outputs recomputed in backward)\n",
           mb(g->param_numel * sizeof(float)), mb(g->grad_numel * sizeof(float)), mb(2 * ts->optim.adamw.n * sizeof(float)),
           mb(p->act_peak), mb(p->grad_peak), mb(g->act_bytes), mb(g->input_bytes + p->act_unshared + p->grad_unshared),
           p->n_remat);
}

// An evaluation after `done` steps, split across the ranks and reduced.
static int run_eval(TrainState *ts, const EgoOnly *ego, long batches, long done, TrainLog *log, int tb, int line, EvalResult *er) {
    int rc = train_evaluate(ts, ego, batches, er);
    if (rc) return rc;
    train_log_eval(log, done, er, tb, line);
    return 0;
}

// The periodic evaluation after `done` steps; the last step has the final
// evaluation instead. tb: 0 leaves out its TensorBoard scalars.
static int periodic_eval(TrainState *ts, const EgoOnly *ego, long done, long last, TrainLog *log, int tb) {
    const Recipe *r = ts->r;
    if (!ts->data.eval || r->train.eval_every <= 0 || done <= 0 || done % r->train.eval_every || done >= last) return 0;
    EvalResult er;
    long batches = (r->train.eval_samples + r->train.micro_batch - 1) / r->train.micro_batch;
    return run_eval(ts, ego, batches, done, log, tb, 1, &er);
}

static int save_checkpoint(const TrainState *ts, const char *run_dir, long done, FILE *metrics) {
    // ZeRO-1: every rank stages its optimizer shard first; rank 0 writes the
    // rest of the checkpoint (docs/distributed.md).
    char zerr[2048];
    if (ts->sync && ts->r->dist.zero && dist_zero_stage(&ts->optim.adamw, ts->model.g, run_dir, done, zerr, sizeof zerr)) {
        fprintf(stderr, "distil: error: rank %d: %s; free disk space, then resume with --resume\n", dist_world()->rank, zerr);
        return 2;
    }
    if (!dist_is_root()) return 0;
    // The metrics lines so far reach the disk before the checkpoint that
    // a resume would keep them for.
    if (fflush(metrics) || fsync(fileno(metrics))) {
        fprintf(stderr, "distil: error: %s/metrics.jsonl: %s; free disk space, then resume with --resume\n", run_dir, strerror(errno));
        return 2;
    }
    char err[2048];
    if (checkpoint_save(ts, run_dir, done, ts->r->train.keep_checkpoints, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s; free disk space (or choose another --out), then resume with --resume\n", err);
        return 2;
    }
    return 0;
}

// A resumed run whose schedule (train.steps, warmup_steps, lr, min_lr)
// differs from the checkpoint's goes on, from the same step, along the new
// curve: said in one line, since an extended train.steps moves every later
// learning rate.
static void note_schedule_change(const Recipe *r, const char *ckpt, long start) {
    char path[1200], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", ckpt);
    StFile *f = st_open(path, err, sizeof err);
    const char *yaml = f ? st_meta(f, "recipe") : NULL;
    Recipe old;
    if (yaml && recipe_load_text(&old, path, yaml) == 0) {
        const RecipeTrain *a = &old.train, *b = &r->train;
        if (a->steps != b->steps || a->warmup_steps != b->warmup_steps || a->lr != b->lr || a->min_lr != b->min_lr) {
            float was = lr_schedule(start, a->warmup_steps, a->steps, (float)a->lr, (float)a->min_lr);
            float now = lr_schedule(start, b->warmup_steps, b->steps, (float)b->lr, (float)b->min_lr);
            printf("note: the checkpoint's schedule was %d steps (warmup %d, lr %g to %g) and this run's is %d (warmup %d, "
                   "lr %g to %g): from step %ld on the learning rate follows the new one (%.3g where the old had %.3g)\n",
                   a->steps, a->warmup_steps, a->lr, a->min_lr, b->steps, b->warmup_steps, b->lr, b->min_lr, start + 1, now, was);
        }
        recipe_free(&old);
    }
    if (f) st_close(f);
}

// --resume: the checkpoint into ts, the run directory (latest, metrics.jsonl)
// back to its step. *start gets the step to go on from.
static int resume_run(TrainState *ts, const char *ckpt, const char *run_dir, long last, long *start) {
    char err[2048], path[1200];
    int threads = 0;
    int rc = checkpoint_load(ts, ckpt, start, &threads, err, sizeof err);
    if (rc > 0) {
        fprintf(stderr, "distil: error: %s; resume with the recipe it was trained with (its model.safetensors holds it "
                "as metadata \"recipe\") or train afresh without --resume\n", err);
        return 2;
    }
    if (rc) {
        const char *slash = strrchr(ckpt, '/');
        fprintf(stderr, "distil: error: %s; resume from another checkpoint (--resume %.*s/step_N) "
                "or train afresh without --resume\n", err, slash ? (int)(slash - ckpt) : 1, slash ? ckpt : ".");
        return 2;
    }
    if (*start > last) {
        fprintf(stderr, "distil: error: %s: the checkpoint is at step %ld, past the %ld steps this run is to stop at; "
                "raise --max-steps or train.steps\n", ckpt, *start, last);
        return 2;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    if (dist_is_root() && (checkpoint_rewind(run_dir, ckpt, *start, err, sizeof err) || metrics_rewind(path, *start, err, sizeof err))) {
        fprintf(stderr, "distil: error: %s; check the run directory's permissions and free space\n", err);
        return 2;
    }
    printf("resuming from %s at step %ld\n", ckpt, *start);
    note_schedule_change(ts->r, ckpt, *start);
    int bf16 = ts->r->train.precision == PRECISION_BF16;
    if (threads != omp_get_max_threads() && ts->model.g->device == DEV_CPU && !cpu_gemm_thread_invariant(bf16))
        printf("note: the checkpoint was written with %d OpenMP threads and this run has %d; the matrix products' sums "
               "(%s) depend on the count, so the run goes on correctly but not bit-identically to an uninterrupted one "
               "(OMP_NUM_THREADS=%d)\n", threads, omp_get_max_threads(), cpu_gemm_path(bf16), threads);
    return 0;
}

// After a stop's checkpoint: every rank waits for rank 0 to have written it,
// then all exit with 128 + sig together; rank 0 says how to go on.
static int stopped(const TrainArgs *a, const char *run_dir, long step, long last, int sig) {
    dist_barrier("the stop's checkpoint");
    dist_exit_together();
    if (dist_is_root())
        fprintf(stderr, "distil: stopped by SIG%s after step %ld of %ld: checkpoint %s/checkpoints/step_%07ld; go on with: "
                "distil train %s --out %s --resume%s\n", sigabbrev_np(sig), step, last, run_dir, step, a->recipe, run_dir,
                a->n_sets ? " (and the same --set options)" : "");
    fflush(stdout);
    fflush(stderr);
    return 128 + sig;
}

int cmd_train(int argc, char **argv) {
    // Under mpirun every rank reads the same arguments, recipe and shards:
    // until the run is set up, a mistake is printed once, by rank 0.
    dist_hold_errors();
    TrainArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    Recipe r;
    if ((rc = recipe_load(&r, a.recipe, a.sets, a.n_sets))) return rc;
    // Under mpirun every rank runs this command; rank 0 alone prints and
    // writes the run directory (docs/distributed.md). Errors still reach stderr.
    int root = dist_is_root();
    if (!root && !freopen("/dev/null", "w", stdout)) { recipe_free(&r); return 2; }
    char run_dir[1024], path[1200], ckpt[1200] = "";
    if (a.out) snprintf(run_dir, sizeof run_dir, "%s", a.out);
    else snprintf(run_dir, sizeof run_dir, "runs/%s", r.name);
    if (fs_mkdir_p(run_dir)) { fprintf(stderr, "distil: error: %s: cannot create the run directory: %s\n", run_dir, strerror(errno)); return 2; }
    if (root && (rc = take_run_dir(run_dir))) { recipe_free(&r); return rc; }
    if (a.resume) {
        // Found before the data is opened: a run with nothing to resume fails at once.
        char err[2048];
        if (checkpoint_resolve(a.resume_from, run_dir, ckpt, sizeof ckpt, err, sizeof err)) {
            fprintf(stderr, "distil: error: %s\n", err);
            recipe_free(&r);
            return 2;
        }
    } else {
        snprintf(path, sizeof path, "%s/checkpoints/latest", run_dir);
        struct stat st;
        if (lstat(path, &st) == 0)
            printf("note: %s/checkpoints holds an earlier run's checkpoints; this run replaces them "
                   "(--resume goes on from them instead)\n", run_dir);
    }

    // What runs, before anything else is said about it: the device's lines,
    // the model's and the memory plan's follow.
    printf("distil train: %s: recipe %s, resolved in %s/recipe.resolved.yaml; TensorBoard: %s/tensorboard\n", r.name,
           a.recipe, run_dir, run_dir);
    fflush(stdout);
    // train.device: a GPU once the self-test has passed on it (train/selftest/gate.c).
    Device device;
    if ((rc = selftest_pick_device(&r, &device))) { recipe_free(&r); return rc; }
    if (device == DEV_CPU) {
        int bf16 = r.train.precision == PRECISION_BF16;
        printf("cpu: %d OpenMP thread%s; matrix products: %s, %s\n", omp_get_max_threads(),
               omp_get_max_threads() == 1 ? "" : "s", cpu_gemm_path(bf16),
               cpu_gemm_thread_invariant(bf16) ? "the same bits for any thread count"
                                               : "whose sums depend on the thread count");
    }
    TrainState ts;
    if ((rc = train_state_open_on(&ts, &r, device))) { train_state_close(&ts); recipe_free(&r); return rc; }
    long total = r.train.steps, last = a.max_steps >= 0 && a.max_steps < total ? a.max_steps : total, start = 0;
    if (a.resume && (rc = resume_run(&ts, ckpt, run_dir, last, &start))) { train_state_close(&ts); recipe_free(&r); return rc; }
    EgoOnly ego;
    memset(&ego, 0, sizeof ego);
    if (ts.data.eval && (rc = fit_ego_only(&ego, &r, &ts.data.setup, EGO_ONLY_FIT_SAMPLES))) return rc;
    dist_release_errors();   // what fails from here on fails on one rank

    snprintf(path, sizeof path, "%s/recipe.resolved.yaml", run_dir);
    FILE *f = fopen(root ? path : "/dev/null", "w");
    if (!f) { fprintf(stderr, "distil: error: %s: %s\n", path, strerror(errno)); return 2; }
    recipe_print_resolved(&r, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/vocab.json", run_dir);
    char verr[1300];
    if (root && vocab_write_json(&ts.data.vocab, path, verr, sizeof verr)) { fprintf(stderr, "distil: error: %s\n", verr); return 2; }
    TrainLog log;
    if ((rc = train_log_open(&log, run_dir, root, a.resume, &r, start, last))) return rc;
    // What it trains, before the first step.
    printf("model: %.2f M parameters (%zu; %d frozen tensors), %d tokens per sample (%d image, ego, command, %d trace, "
           "action), vocabulary %d; micro-batch %d x %d accumulation x %d rank%s; steps %ld to %ld of %ld\n",
           graph_param_numel(ts.model.g) / 1e6, graph_param_numel(ts.model.g), ts.model.frozen, ts.model.st.seq_len,
           ts.model.st.n_img_tokens, ts.data.setup.mc.max_trace, ts.data.vocab.size, r.train.micro_batch, ts.data.accum,
           dist_world()->world, dist_world()->world == 1 ? "" : "s", start + 1, last, total);
    print_memory_plan(&ts);
    fflush(stdout);

    // The evaluation due at the resumed step ran before the checkpoint, and
    // metrics_rewind dropped its line with the later ones: it is redone (the
    // same weights and samples give the same line). Its TensorBoard scalars
    // are in the earlier event file still.
    if (start > 0 && (rc = periodic_eval(&ts, &ego, start, last, &log, 0))) return rc;
    catch_stop_signals(root);
    ts.stop_request = &stop_signal;
    long end = last;
    int stop = 0;
    for (long step = start + 1; step <= last; step++) {   // steps count from 1: step N leaves N done
        StepStats ss;
        int st = train_step(&ts, step - 1, &ss);
        if (st == STEP_ERROR) { train_log_break(&log); return 2; }
        train_log_step(&log, step, &ss, st == STEP_SKIPPED);
        // A stop skips the evaluation due here: the resumed run does it first.
        if ((stop = ss.stop_signal)) { end = step; break; }
        if ((rc = periodic_eval(&ts, &ego, step, last, &log, 1))) return rc;
        fflush(log.metrics);
        if (r.train.checkpoint_every > 0 && step % r.train.checkpoint_every == 0 && step < last &&
            (rc = save_checkpoint(&ts, run_dir, step, log.metrics)))
            return rc;
    }
    train_log_break(&log);
    printf("trained %ld steps in %.1f s (%ld skipped as non-finite, %ld bad samples skipped, %ld traces truncated)\n",
           end - start, progress_now() - log.console.t0, ts.optim.bad_total, (long)loader_bad_samples(ts.data.train),
           (long)loader_truncated_traces(ts.data.train));
    // The final checkpoint before the final evaluation, which changes nothing.
    if (end > start && (rc = save_checkpoint(&ts, run_dir, end, log.metrics))) return rc;
    if (stop) {
        train_log_close(&log);
        return stopped(&a, run_dir, end, last, stop);
    }

    if (ts.data.eval) {
        EvalResult er;
        if ((rc = run_eval(&ts, &ego, 0, last, &log, 1, 0, &er))) return rc;
        snprintf(path, sizeof path, "%s/eval.json", run_dir);
        json_t *doc = eval_object(&er);
        rc = jsonio_write_file(root ? path : "/dev/null", doc, JSONIO_F64);
        json_decref(doc);
        if (rc) { fprintf(stderr, "distil: error: %s: cannot write: %s\n", path, strerror(errno)); return 2; }
        eval_print_table(&er, stdout);
        ego_only_free(&ego);
    }
    train_log_close(&log);
    printf("run directory: %s\n", run_dir);
    train_state_close(&ts);
    recipe_free(&r);
    return 0;
}
