/*
 * sqlite_wal: durability and size of the write-ahead log. sqlite_sync runs on
 * the store's syncer thread and fdatasyncs the WAL file after commits made with
 * synchronous=NORMAL, which gives synchronous=FULL's guarantee while the writer
 * builds the next batch; the checkpointer thread (sqlite-ckpt, its own
 * connection) copies pages back with PASSIVE checkpoints that never block a
 * commit, and the writer finishes one itself when the WAL grows too long.
 * Nothing here touches the rows.
 */
#include "sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* WAL checkpoints. A thread of its own (with its own connection) copies pages
 * back into the database with PASSIVE checkpoints that never delay a commit; it
 * is woken once the WAL holds SQLITE_CHECKPOINT_FRAMES frames (and every second). Under a
 * continuous write load such a checkpoint never quite catches up, so the WAL could not restart and
 * would grow without bound: once it holds SQLITE_WAL_MAX_FRAMES frames, the
 * writer finishes the checkpoint itself between two transactions (little is
 * left to copy by then) and the next transaction starts the WAL from the top. */
#define SQLITE_CHECKPOINT_FRAMES 2048
#define SQLITE_WAL_MAX_FRAMES 8192

int sqlite_wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
    struct sqlite_backend *be = ud;
    (void)db;
    (void)name;
    be->wal_frames = frames;
    return SQLITE_OK;
}

void sqlite_maybe_checkpoint(struct sqlite_backend *be)
{
    if (be->wal_frames >= SQLITE_WAL_MAX_FRAMES) {
        sqlite3_wal_checkpoint_v2(be->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        be->wal_frames = 0;
    }
    if (!be->have_checkpointer || be->wal_frames < SQLITE_CHECKPOINT_FRAMES)
        return;
    pthread_mutex_lock(&be->ck_lock);
    be->ck_due = true;
    pthread_cond_signal(&be->ck_wake);
    pthread_mutex_unlock(&be->ck_lock);
}

static void *sqlite_checkpoint_main(void *arg)
{
    struct sqlite_backend *be = arg;
    pthread_setname_np(pthread_self(), "sqlite-ckpt");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(be->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 1000);
    /* A connection learns that the file is in WAL mode only once it has read
     * it; until then a checkpoint call does nothing. */
    sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
    for (;;) {
        pthread_mutex_lock(&be->ck_lock);
        while (!be->ck_due && !be->ck_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1; /* at least once a second while idle */
            if (pthread_cond_timedwait(&be->ck_wake, &be->ck_lock, &ts) != 0)
                break;
        }
        bool stop = be->ck_stop;
        be->ck_due = false;
        pthread_mutex_unlock(&be->ck_lock);
        /* PASSIVE never blocks the writer; the last one at shutdown truncates. */
        sqlite3_wal_checkpoint_v2(
            db, NULL, stop ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (stop)
            break;
    }
    sqlite3_close(db);
    return NULL;
}

void sqlite_checkpointer_start(struct sqlite_backend *be)
{
    if (pthread_create(&be->checkpointer, NULL, sqlite_checkpoint_main, be) == 0)
        be->have_checkpointer = true;
}

void sqlite_checkpointer_stop(struct sqlite_backend *be)
{
    if (!be->have_checkpointer)
        return;
    pthread_mutex_lock(&be->ck_lock);
    be->ck_stop = true;
    pthread_cond_signal(&be->ck_wake);
    pthread_mutex_unlock(&be->ck_lock);
    pthread_join(be->checkpointer, NULL);
    be->have_checkpointer = false;
}

/* Makes every committed transaction durable: fdatasync of the WAL file (any fd
 * of the file flushes it). The WAL is reopened if it was replaced, and its
 * directory is synced once per open so the file itself survives a crash. */
int sqlite_sync(struct store_backend *base, char *err, size_t err_len)
{
    struct sqlite_backend *be = (struct sqlite_backend *)base;
    char wal[4200];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", be->path);
    if (stat(wal, &sb) < 0) {
        snprintf(err, err_len, "cannot stat the WAL file: %s", strerror(errno));
        return -1;
    }
    if (be->wal_fd < 0 || sb.st_ino != be->wal_ino) {
        if (be->wal_fd >= 0)
            close(be->wal_fd);
        be->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
        if (be->wal_fd < 0) {
            snprintf(err, err_len, "cannot open the WAL file: %s", strerror(errno));
            return -1;
        }
        be->wal_ino = sb.st_ino;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", be->path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    if (fdatasync(be->wal_fd) < 0) {
        snprintf(err, err_len, "fdatasync of the WAL failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}
