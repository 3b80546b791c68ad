/*
 * rule_cases: operator-written test cases for a rule (`hookline rule-test
 * --cases`, `rules.cases`): a JSON file of events and the plan each must
 * produce (or the error it must raise), run offline through the rule engine.
 * Also the plan comparison and line diff that replay prints.
 */
#ifndef HOOKLINE_RULE_CASES_H
#define HOOKLINE_RULE_CASES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "rules.h"

/* What a run of a cases file found. */
struct rule_cases_report {
    int passed, failed;
    char failing[400]; /* the failing cases' names, comma-separated (cut to fit) */
};

/* Runs every case of the file at path (docs/contract.md section 1) with rules
 * r, on the calling thread; cfg (borrowed) supplies the sources and their
 * event id settings. With out set, prints one "PASS name" / "FAIL name: why"
 * line per case, a diff under a failing plan, and "N passed, N failed" last.
 * Returns 0 with the counts in *rep, or -1 when the file cannot be read or a
 * case is malformed ("FILE: case N (name): what" in err[err_len]; no case runs). */
int rule_cases_run(const struct config *cfg, struct rules *r, const char *path, FILE *out,
                   struct rule_cases_report *rep, char *err, size_t err_len);

/* A rules_gate_fn (rules.h) refusing a reloaded rule whose rules.cases fail:
 * ctx is the struct config (borrowed; must outlive the engine), whose
 * rules_cases file is read again at each reload. */
int rule_cases_gate(struct rules *candidate, void *ctx, char *err, size_t err_len);

/* A line diff of two plans (or any JSON values), each printed with sorted keys
 * and two-space indentation: lines only in expected start "- ", lines only in
 * actual "+ ", common lines "  ", each line prefixed with indent. Returns a new
 * string (caller frees; "" when both print alike), or NULL when out of memory.
 * Plans longer than a few thousand lines are shown whole, one after the other. */
char *rule_cases_diff(const json_t *expected, const json_t *actual, const char *indent);

#endif
