// fuzz_recipe.c: a recipe file through the strict YAML reader
// (train/recipe/recipe.c). A recipe that loads is printed resolved, loaded
// again and printed again: the two prints must be the same text (what
// `distil recipe check` promises).
#include "fuzz/fuzz.h"
#include "train/recipe/recipe.h"   // defines: recipe_load, recipe_print_resolved, recipe_free

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    return 0;
}

static char *resolved(const Recipe *r, size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f) abort();
    recipe_print_resolved(r, f);
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600], again[600];
    fuzz_write(fuzz_path(path, sizeof path, "recipe.yaml"), data, size);
    Recipe r;
    if (recipe_load(&r, path, NULL, 0)) return 0;
    size_t n1, n2;
    char *first = resolved(&r, &n1);
    recipe_free(&r);
    fuzz_write(fuzz_path(again, sizeof again, "recipe.yaml"), (const uint8_t *)first, n1);
    if (recipe_load(&r, again, NULL, 0)) {
        fprintf(stderr, "fuzz_recipe: the resolved recipe does not load again:\n%s\n", first);
        abort();
    }
    char *second = resolved(&r, &n2);
    recipe_free(&r);
    if (n1 != n2 || memcmp(first, second, n1)) {
        fprintf(stderr, "fuzz_recipe: the resolved recipe changes when loaded again:\n%s\n---\n%s\n", first, second);
        abort();
    }
    free(first);
    free(second);
    return 0;
}
