/*
 * console_assets: the console's files (src/console/assets/), compiled into the
 * binary by a CMake step (src/console/embed_assets.cmake) that writes
 * console_assets.c in the build directory: no network, no node, no external
 * fonts or CDN at build or run time. Read-only data; any thread.
 */
#ifndef HOOKLINE_CONSOLE_ASSETS_H
#define HOOKLINE_CONSOLE_ASSETS_H

#include <stddef.h>

struct console_asset {
    const char *name;         /* file name under assets/ ("app.js") */
    const char *content_type; /* from its extension */
    const unsigned char *data;
    size_t len;
    const char *etag; /* "\"<first 16 hex of SHA-256>\"" */
};

/* The table (borrowed, static) and its length. */
extern const struct console_asset console_assets[];
extern const size_t console_assets_count;

/* The asset named name, or NULL. */
const struct console_asset *console_asset_find(const char *name);

#endif
