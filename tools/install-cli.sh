#!/bin/sh
# Link the virtualenv's `migw` into $BINDIR (default ~/.local/bin) so that a second terminal
# finds it; say how to reach it when that directory is not on the PATH. Used by `make demo`.
set -eu
target="$1"
bindir="${BINDIR:-$HOME/.local/bin}"
mkdir -p "$bindir"
link="$bindir/migw"
if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "migw: $link exists and is not a link: left alone (run $target)" >&2
    exit 0
fi
ln -sfn "$target" "$link"
case ":$PATH:" in
    *":$bindir:"*) echo "migw: linked $link -> $target" ;;
    *) echo "migw: linked $link -> $target; $bindir is not on this shell's PATH:" \
            "open a new login shell, or run: export PATH=\"$bindir:\$PATH\"" ;;
esac
