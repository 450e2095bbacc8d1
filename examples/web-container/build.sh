#!/bin/sh
# Builds the image herd-example-web:latest without a registry: the server is
# compiled statically and copied into an image FROM scratch. Run it from the
# repository root or from anywhere inside it.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-herd-example-web:latest}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

(cd "$here" && CGO_ENABLED=0 go build -o "$ctx/web" .)
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -t "$tag" "$ctx"
