# Helpers shared by the benchmark scripts (sourced, not run). Each script sets ROOT (the
# repository) and BUILD_DIR before it calls them.

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# Wall-clock nanoseconds (bash's $EPOCHREALTIME, microsecond resolution).
now_ns() { local t=$EPOCHREALTIME; echo "${t/./}000"; }

# The source revision a binary is built from (-dirty: uncommitted edits in the tree).
bench_rev() { git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'; }

# bench_build BINARY TARGET...: configures BUILD_DIR (Ninja; RelWithDebInfo when new) and builds
# TARGETs. Other folders may be mid-edit in a shared tree, so a failed build is not fatal when
# BINARY is already there: a warning says it may be stale.
bench_build() {
  local binary=$1
  shift
  local configure=(-G Ninja)
  [[ -f "$BUILD_DIR/CMakeCache.txt" ]] || configure+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
  if ! { cmake -S "$ROOT" -B "$BUILD_DIR" "${configure[@]}" >/dev/null &&
         cmake --build "$BUILD_DIR" -j2 --target "$@" >/dev/null; }; then
    [[ -x "$binary" ]] || { echo "build failed" >&2; exit 1; }
    echo "warning: build failed; using the existing $binary" >&2
  fi
}

# bench_ensure_image IMAGE: imports IMAGE (a root file system of Debian's static /bin/busybox
# and /bin/sh linked to it) into the engine of DOCKER_HOST unless it is there.
bench_ensure_image() {
  local image=$1 rootfs
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  [[ -x /bin/busybox ]] || { echo "/bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }
  rootfs="$(mktemp -d /tmp/berth-bench-rootfs.XXXXXX)"
  mkdir -p "$rootfs/bin"
  cp /bin/busybox "$rootfs/bin/busybox"
  ln -s busybox "$rootfs/bin/sh"
  tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
  rm -rf "$rootfs"
  log "imported $image from /bin/busybox"
}

# bench_write_section DOC SECTION_FILE HEADING: replaces the section of DOC that starts at the
# line HEADING (up to the next "## " heading) with SECTION_FILE, or appends it when DOC has no
# such heading; DOC is created when missing. Other sections are left alone.
bench_write_section() {
  python3 - "$1" "$2" "$3" <<'EOF'
import re, sys
doc_path, section_path, heading = sys.argv[1], sys.argv[2], sys.argv[3]
section = open(section_path).read()
try:
    doc = open(doc_path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\n"
m = re.search("^" + re.escape(heading) + "$", doc, re.M)
if m is None:
    doc = doc.rstrip("\n") + "\n\n" + section
else:
    nxt = re.search(r"^## ", doc[m.end():], re.M)
    doc = doc[:m.start()] + section + (doc[m.end() + nxt.start():] if nxt else "")
open(doc_path, "w").write(doc.rstrip("\n") + "\n")
EOF
  echo "wrote $1" >&2
}
