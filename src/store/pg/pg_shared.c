/*
 * pg_shared: what several `serve` processes on one PostgreSQL database share
 * beyond the queue and the audit chain: the one DIDWW rate budget (a ring of
 * n slot times in rate_budget, taken by hookline_rate_take under the row's
 * lock and set to the answer's time by hookline_rate_done, schema 2), the maintenance lease (a
 * session advisory lock held by this connection, so it ends when the process or its connection
 * dies) and the instances table with each process's heartbeat. Everything runs on the backend's own
 * "shared" connection under slock, from any thread (delivery workers, the maintenance thread,
 * main's peer thread); each call is one short statement. It never touches the writer's transaction.
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pg_shared_init(struct pg_backend *be)
{
    pthread_mutex_init(&be->slock, NULL);
}

void pg_shared_free(struct pg_backend *be)
{
    if (be->s.c)
        PQfinish(be->s.c);
    be->s.c = NULL;
    pthread_mutex_destroy(&be->slock);
    free(be->instance);
    be->instance = NULL;
}

/* Runs one statement on the shared connection (caller holds slock). Returns
 * the result (caller PQclears) or NULL with err set; a broken connection is
 * dropped so the next call reconnects (and the lease is known lost). */
static PGresult *pg_shared_run(struct pg_backend *be, const char *sql, const struct pg_params *p,
                               const char *what, char *err, size_t err_len)
{
    PGconn *c = pg_conn_get(be, &be->s, err, err_len);
    if (!c)
        return NULL;
    PGresult *r = pg_run(c, sql, p, PGRES_TUPLES_OK, what, err, err_len);
    if (!r && PQstatus(c) == CONNECTION_BAD)
        pg_conn_drop(&be->s, "connection lost");
    return r;
}

int pg_rate_take(struct store_backend *base, const char *key, int n, double window_s, double hold_s,
                 struct store_rate_slot *slot, double *wait_s, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, key);
    pg_params_int(&p, n);
    pg_params_double(&p, window_s);
    pg_params_double(&p, hold_s);
    pthread_mutex_lock(&be->slock);
    PGresult *r = pg_shared_run(be,
                                "SELECT wait, slot, until FROM hookline_rate_take($1, $2::integer, "
                                "$3::float8, $4::float8)",
                                &p, "taking a rate slot", err, err_len);
    int rc = -1;
    *wait_s = 0.1;
    slot->slot = 0;
    if (r) {
        int s = (int)pg_get_int(r, 0, 1);
        if (s > 0) {
            rc = 0;
            slot->slot = s;
            slot->until = pg_get_double(r, 0, 2);
            *wait_s = 0;
        } else {
            rc = 1;
            *wait_s = pg_get_double(r, 0, 0);
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&be->slock);
    return rc;
}

int pg_rate_done(struct store_backend *base, const char *key, const struct store_rate_slot *slot,
                 char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, key);
    pg_params_int(&p, slot->slot);
    pg_params_double(&p, slot->until);
    pthread_mutex_lock(&be->slock);
    PGresult *r = pg_shared_run(be, "SELECT hookline_rate_done($1, $2::integer, $3::float8)", &p,
                                "releasing a rate slot", err, err_len);
    int rc = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&be->slock);
    return rc;
}

int pg_leader_try(struct store_backend *base, bool *leader, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    /* Held already (pg_locks of this session), else try to take it: the lock
     * is never taken twice, so one unlock-free session holds it once. */
    char classid[24], objid[24];
    snprintf(classid, sizeof classid, "%lld", (long long)(PG_LEADER_LOCK_KEY >> 32));
    snprintf(objid, sizeof objid, "%lld", (long long)(PG_LEADER_LOCK_KEY & 0xffffffffLL));
    struct pg_params p = {0};
    pg_params_text(&p, classid);
    pg_params_text(&p, objid);
    pg_params_int(&p, PG_LEADER_LOCK_KEY);
    pthread_mutex_lock(&be->slock);
    PGresult *r = pg_shared_run(
        be,
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = "
        "pg_backend_pid() AND granted AND objsubid = 1 AND classid = $1::oid AND objid = "
        "$2::oid) THEN true ELSE pg_try_advisory_lock($3::bigint) END",
        &p, "taking the maintenance lease", err, err_len);
    *leader = r && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    int rc = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&be->slock);
    return rc;
}

int pg_instance_beat(struct store_backend *base, const struct store_instance *self, char *err,
                     size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, self->id);
    pg_params_double(&p, self->started_at);
    pg_params_text(&p, self->rule_version);
    pg_params_text(&p, self->leader ? "true" : "false");
    pg_params_text(&p, self->paused ? "true" : "false");
    pthread_mutex_lock(&be->slock);
    PGresult *r = pg_shared_run(
        be,
        "INSERT INTO instances (id, started_at, heartbeat_at, rule_version, leader, paused) "
        "VALUES ($1, $2, extract(epoch FROM clock_timestamp()), $3, $4::boolean, $5::boolean) "
        "ON CONFLICT (id) DO UPDATE SET started_at = $2, heartbeat_at = extract(epoch FROM "
        "clock_timestamp()), rule_version = $3, leader = $4::boolean, paused = $5::boolean "
        "RETURNING 1",
        &p, "recording the heartbeat", err, err_len);
    int rc = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&be->slock);
    return rc;
}

int pg_instance_forget(struct store_backend *base, const char *id, char *err, size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    struct pg_params p = {0};
    pg_params_text(&p, id);
    pthread_mutex_lock(&be->slock);
    PGresult *r = pg_shared_run(be, "DELETE FROM instances WHERE id = $1 RETURNING 1", &p,
                                "removing the instance", err, err_len);
    int rc = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&be->slock);
    return rc;
}

int pg_instances_scan(struct store_backend *base, store_instance_fn fn, void *ctx, char *err,
                      size_t err_len)
{
    struct pg_backend *be = (struct pg_backend *)base;
    pthread_mutex_lock(&be->slock);
    PGresult *r = pg_shared_run(be,
                                "SELECT id, started_at, extract(epoch FROM clock_timestamp()) - "
                                "heartbeat_at, rule_version, leader, paused FROM instances "
                                "ORDER BY id LIMIT 1000",
                                NULL, "listing instances", err, err_len);
    pthread_mutex_unlock(&be->slock);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_instance in = {.id = pg_get_str(r, i, 0),
                                    .started_at = pg_get_double(r, i, 1),
                                    .heartbeat_age_s = pg_get_double(r, i, 2),
                                    .rule_version = pg_get_str(r, i, 3),
                                    .leader = strcmp(PQgetvalue(r, i, 4), "t") == 0,
                                    .paused = strcmp(PQgetvalue(r, i, 5), "t") == 0};
        if (fn(&in, ctx))
            break;
    }
    PQclear(r);
    return 0;
}
