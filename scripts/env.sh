# shellcheck shell=sh
# Loads the development secrets scripts/run.sh generated (var/dev-secrets.env) into
# the current shell, so that curl and friends can use them in a new terminal:
#
#     . scripts/env.sh        (source it, from bash, zsh or dash; do not run it)
#     curl -H "Authorization: Bearer $HOOKLINE_ADMIN_TOKEN" http://127.0.0.1:8080/v1/jobs
#
# Each line of the file is NAME=VALUE (the value is everything after the first '=',
# taken as is, never evaluated as shell code). A variable already set keeps its
# value, as in run.sh. Names are printed, values never. The file is used only when
# it is yours and nobody else may read it (mode 600), as hookline itself requires.
# (hookline's own commands do not need this: they read the file themselves.)

_hl_src=
if [ -n "${BASH_VERSION:-}" ]; then
    eval '_hl_src=${BASH_SOURCE[0]}'
elif [ -n "${ZSH_VERSION:-}" ]; then
    eval '_hl_src=${(%):-%x}'
fi
if [ -n "$_hl_src" ]; then
    _hl_repo=$(cd "$(dirname "$_hl_src")/.." && pwd)
else
    _hl_repo=$(pwd) # other shells: run it from the repository's top directory
fi
_hl_file=$_hl_repo/var/dev-secrets.env

if [ ! -f "$_hl_file" ]; then
    echo "hookline: $_hl_file does not exist yet: scripts/run.sh generates it" >&2
elif [ -n "$(find "$_hl_file" -prune \( ! -user "$(id -u)" -o -perm /077 \) 2>/dev/null)" ]; then
    echo "hookline: $_hl_file not loaded: it must be yours and mode 600 (chmod 600 it)" >&2
else
    _hl_loaded=
    _hl_kept=
    while IFS= read -r _hl_line || [ -n "$_hl_line" ]; do
        _hl_name=${_hl_line%%=*}
        case $_hl_name in '' | [0-9]* | *[!A-Za-z0-9_]*) continue ;; esac
        [ "$_hl_name" = "$_hl_line" ] && continue
        eval "_hl_have=\${$_hl_name:-}"
        if [ -z "$_hl_have" ]; then
            export "$_hl_name=${_hl_line#*=}"
            _hl_loaded="$_hl_loaded $_hl_name"
        else
            _hl_kept="$_hl_kept $_hl_name"
        fi
    done <"$_hl_file"
    echo "hookline: loaded from $_hl_file:${_hl_loaded:- nothing}" >&2
    [ -z "$_hl_kept" ] || echo "hookline: already set, kept:$_hl_kept" >&2
fi
unset _hl_src _hl_repo _hl_file _hl_loaded _hl_kept _hl_line _hl_name _hl_have
