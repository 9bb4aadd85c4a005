# Sourced by scripts/bench-small and scripts/bench-ab: the many-small-
# changesets project they measure. Needs $promoter (the binary) and $work
# (the cache directory).

# migration I: the SQL of the I-th changeset (a table, an index, two rows).
migration() {
    local i=$1
    printf 'CREATE TABLE t%d (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());\n' "$i"
    printf 'CREATE INDEX t%d_name ON t%d (name);\n' "$i" "$i"
    printf "INSERT INTO t%d (id, name) VALUES (1, 'one'), (2, 'two');\n" "$i"
}

# make_project N: a project with N signed changesets, cached.
make_project() {
    local n=$1 project=$work/project-$1 i id
    [ -f "$project/.ready" ] && return
    echo "bench-small: making a project of $n signed changesets (once; cached in $work)"
    rm -rf "$project" "$work/keys-$n"
    mkdir -p "$project"
    # Its own repository first: the secret key goes outside it (keys
    # generate refuses an --out inside the project's repository).
    (cd "$project" && git init -q)
    "$promoter" -C "$project" init >/dev/null
    cat >"$project/environments.yaml" <<'YAML'
environments:
  dev:
    database_url: ${DEV_DATABASE_URL}
  qat:
    database_url: ${QAT_DATABASE_URL}
    promote_from: dev
    require: { developer: 1 }
  prd:
    database_url: ${PRD_DATABASE_URL}
    promote_from: qat
    require: { developer: 1 }
YAML
    "$promoter" -C "$project" --json keys generate --no-passphrase --name "Bench Developer <bench@example.com>" --out "$work/keys-$n" >"$work/key.json"
    mkdir -p "$project/keys/developers"
    cp "$work"/keys-$n/*[0-9A-F].asc "$project/keys/developers/"
    : >"$work/all-$n.sql"
    for i in $(seq "$n"); do
        id=$("$promoter" -C "$project" --json new "t$i" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
        migration "$i" >"$project/changesets/$id/001-t$i.sql"
        migration "$i" >>"$work/all-$n.sql"
        migration "$i" >"$work/each-$n-$(printf %05d "$i").sql"
    done
    "$promoter" -C "$project" seal >/dev/null
    (cd "$project" && git add -A && git -c user.name=bench -c user.email=b@example.com commit -qm changesets)
    "$promoter" -C "$project" sign --key "$(ls "$work"/keys-$n/*.secret.asc)" $(seq "$n") >/dev/null
    (cd "$project" && git add -A && git -c user.name=bench -c user.email=b@example.com commit -qm signatures)
    touch "$project/.ready"
}

# dbmate_dir N: the same migrations in dbmate's layout (one transaction
# each), in $work/dbmate-N, made once.
dbmate_dir() {
    local n=$1 f i
    [ -d "$work/dbmate-$n" ] && return
    mkdir -p "$work/dbmate-$n.tmp"
    for f in "$work"/each-$n-*.sql; do
        i=${f##*-}; i=${i%.sql}
        { echo "-- migrate:up"; cat "$f"; echo; echo "-- migrate:down"; } >"$work/dbmate-$n.tmp/${i}_t$((10#$i)).sql"
    done
    mv "$work/dbmate-$n.tmp" "$work/dbmate-$n"
}
