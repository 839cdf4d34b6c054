#!/bin/sh
# Product files speak of hood alone: list every line of them that points outside the product (notes,
# folders or trackers that do not ship) and fail when there is one. `make lint` runs it.
#   .ci/check_refs.sh [ROOT]   # ROOT defaults to the repository this script lives in
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
paths=""
for p in hood configs docs README.md Makefile; do
  [ -e "$p" ] && paths="$paths $p"
done
[ -n "$paths" ] || { echo "check_refs: nothing to check under $root" >&2; exit 2; }
# shellcheck disable=SC2086  # $paths is a list of words
hits=$(grep -rnIE --exclude-dir=__pycache__ 'METHOD\.md|issue [0-9]|\.\./shared|\.carry' $paths)
if [ -n "$hits" ]; then
  echo "$hits"
  echo "check_refs: $(echo "$hits" | wc -l | tr -d ' ') line(s) above point outside the product" >&2
  exit 1
fi
echo "check_refs: no product file points outside the product"
