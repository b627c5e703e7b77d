#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test: the documentation under Documentation/target must build.
#
#  1. Every .rst file there is built with docutils (python3-docutils) and
#     any system message of level WARNING or above (malformed table, bad
#     indentation, unknown role or directive, broken reference...) fails
#     the test. Sphinx-only markup (toctree, :doc:, :ref:) is therefore not
#     allowed; link between files with plain text.
#  2. Every file starts with the kernel's ".. SPDX-License-Identifier:"
#     line.
#  3. tcmu-design.rst names, as ``literal``, every control key, configfs
#     attribute and action, attrib/stats counter and module parameter that
#     target_core_user.c defines, so the reference cannot silently fall
#     behind the code.
#
# Before trusting the builder, a deliberately broken document is fed to it
# and must be rejected, so a builder that ignores warnings cannot make the
# test pass.
#
# Exit status: 0 pass, 4 skip (docutils not installed), 1 failure.
# DOC_RST_DIR and DOC_RST_SRC override the documentation directory and the
# module source (used to test this script).

set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
DOCDIR=${DOC_RST_DIR:-$ROOT/Documentation/target}
SRC=${DOC_RST_SRC:-$ROOT/target_core_user.c}
W=$(mktemp -d /tmp/doc-rst.XXXXXX)
trap 'rm -rf "$W"' EXIT

pass=0
fail=0
ok()  { echo "ok - $*"; pass=$((pass + 1)); }
bad() { echo "not ok - $*"; fail=$((fail + 1)); }
finish() {
	echo "doc-rst: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
}

# ---- the builder ----
# Debian 12's python3-docutils (0.19) has "python3 -m docutils"; older
# ones only ship the rst2html front end.
BUILDER=()
if python3 -c 'import docutils.__main__' >/dev/null 2>&1; then
	BUILDER=(python3 -m docutils)
elif command -v rst2html >/dev/null 2>&1; then
	BUILDER=(rst2html)
elif command -v rst2html5 >/dev/null 2>&1; then
	BUILDER=(rst2html5)
fi
if [ ${#BUILDER[@]} -eq 0 ]; then
	echo "SKIP: docutils not installed (apt-get install python3-docutils)"
	exit 4
fi
echo "# builder: ${BUILDER[*]} ($("${BUILDER[@]}" --version 2>&1 | head -n 1))"

# Build $1; print every message at WARNING or above; fail on any.
build() {
	local out rc
	out=$("${BUILDER[@]}" --halt=warning --report=warning \
		--exit-status=warning --input-encoding=utf-8:strict \
		--no-traceback "$1" "$W/out.html" 2>&1)
	rc=$?
	[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/#   /'
	[ "$rc" -eq 0 ] && [ -z "$out" ]
}

# ---- 0. the builder must reject a broken document ----
cat >"$W/broken.rst" <<'EOF'
.. SPDX-License-Identifier: GPL-2.0

Title
=====

=====  =====
a      b
=====  =====
toolongforthecolumn  x
=====  =====

Text with an `unterminated reference.
EOF
if build "$W/broken.rst" >/dev/null; then
	bad "builder accepted a broken document; results would mean nothing"
	finish
fi
ok "builder rejects a broken document"

# ---- 1./2. build every file ----
mapfile -t files < <(find "$DOCDIR" -name '*.rst' -type f | sort)
if [ ${#files[@]} -eq 0 ]; then
	bad "no .rst files under $DOCDIR"
	finish
fi
for f in "${files[@]}"; do
	rel=${f#"$ROOT"/}
	if build "$f"; then
		ok "$rel builds without warnings"
	else
		bad "$rel: docutils reported problems (above)"
	fi
	if head -n 1 "$f" | grep -q '^\.\. SPDX-License-Identifier: '; then
		ok "$rel has an SPDX line"
	else
		bad "$rel: first line is not '.. SPDX-License-Identifier: ...'"
	fi
done

# ---- 3. the reference names everything the code defines ----
DESIGN=$DOCDIR/tcmu-design.rst
if [ ! -f "$SRC" ] || [ ! -f "$DESIGN" ]; then
	bad "need $SRC and $DESIGN for the completeness check"
	finish
fi
names=$(
	{
		# control keys: { TCMU_OPT_X, "key=%s" }
		sed -n 's/.*{ *TCMU_OPT_[A-Z_]*, *"\([a-z_]*\)=%s" *}.*/\1/p' "$SRC"
		# configfs attributes and actions
		sed -n 's/^CONFIGFS_ATTR\(_RO\|_WO\)\?(tcmu_, *\([a-z_]*\)).*/\2/p' "$SRC"
		# module parameters
		sed -n 's/^module_param\(_cb\|_named\)\?(\([a-z_]*\),.*/\2/p' "$SRC"
		# attrib/stats counters: the "name %..\n" pairs of its format
		grep -o '"cmds %[^"]*"' "$SRC" | tr -d '"' |
			sed 's/\\n/\n/g' | sed -n 's/^\([a-z_]*\) %.*/\1/p'
	} | sort -u
)
count=$(printf '%s\n' "$names" | grep -c .)
# 33 distinct names today (8 control keys, 15 attributes and actions,
# 4 parameters, 12 counters): far fewer means the extraction broke.
if [ "$count" -lt 30 ]; then
	bad "found only $count names in $SRC; the extraction patterns are stale"
	finish
fi
missing=()
for n in $names; do
	grep -qF "\`\`$n\`\`" "$DESIGN" || missing+=("$n")
done
if [ ${#missing[@]} -eq 0 ]; then
	ok "tcmu-design.rst names all $count keys, attributes, actions, counters and parameters"
else
	bad "tcmu-design.rst does not name: ${missing[*]}"
fi

finish
