"""Made-up PR changes that fix or speed up code: a crash guard, a cache, a tolerant CSV parser, a test.

One function per kind (see synthetic_pr_changes.py for `Change` and the helpers); phrasings are drawn
from several variants so that descriptions differ the way real ones do. Invented code for tests.
"""

from __future__ import annotations

import random

from limi_testing.synthetic_pr_changes import Change, ident, pick, random_hunk, source_path


def debugging(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun, module = ctx["language"], ctx["noun"], ctx["module"]
    fn = ident(lang, "load", noun, "owner")
    path = source_path(ctx, f"{noun}_service")
    code = {
        "py": (
            f"def {fn}(self, {noun}_id):",
            [f"    record = self._store.get({noun}_id)"],
            ["    return record.owner.name"],
            [
                "    if record is None or record.owner is None:",
                f"        raise {noun.capitalize()}NotFound({noun}_id)",
                "    return record.owner.name",
            ],
            [""],
        ),
        "go": (
            f"func (s *Service) {fn}(ctx context.Context, id string) (string, error) {{",
            ["\trec, err := s.store.Get(ctx, id)", "\tif err != nil {", '\t\treturn "", err', "\t}"],
            ["\treturn rec.Owner.Name, nil"],
            [
                "\tif rec == nil || rec.Owner == nil {",
                f'\t\treturn "", fmt.Errorf("{noun} %s: %w", id, ErrNotFound)',
                "\t}",
                "\treturn rec.Owner.Name, nil",
            ],
            ["}"],
        ),
        "ts": (
            f"export async function {fn}(id: string): Promise<string> {{",
            ["  const record = await store.get(id);"],
            ["  return record.owner.name;"],
            [
                "  if (!record?.owner) {",
                f"    throw new NotFoundError(`{noun} ${{id}} has no owner`);",
                "  }",
                "  return record.owner.name;",
            ],
            ["}"],
        ),
        "rs": (
            f"pub fn {fn}(&self, id: &str) -> Result<String, Error> {{",
            [],
            ["    let record = self.store.get(id).unwrap();", "    Ok(record.owner.name.clone())"],
            [
                "    let record = self.store.get(id).ok_or_else(|| Error::NotFound(id.to_string()))?;",
                "    let owner = record.owner.as_ref().ok_or(Error::MissingOwner)?;",
                "    Ok(owner.name.clone())",
            ],
            ["}"],
        ),
    }[lang]
    title = pick(
        rng,
        f"Fix crash when a {noun} has no owner",
        f"{module}: return NotFound instead of crashing in {fn}",
        f"Handle missing {noun} owner in {module}",
    )
    body = pick(
        rng,
        f"`{fn}` crashed with a null dereference when the {noun} was deleted or never had an owner (reported in #{ctx['issue']}). It now returns a not-found error that the API maps to 404.",
        f"Since the {module} migration some {noun}s have no owner and the lookup panics in production. This adds the missing checks and a typed error.",
    )
    return Change("debugging", title, body, [path], random_hunk(path, rng, code[0], *code[1:]))


def optimization(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun, module, seconds = ctx["language"], ctx["noun"], ctx["module"], ctx["seconds"]
    fn = ident(lang, "resolve", noun, "permissions")
    path = source_path(ctx, "permissions")
    code = {
        "py": (
            f"class {module.capitalize()}Permissions:",
            [f"    def {fn}(self, user_id):"],
            ["        return self._db.query_permissions(user_id)"],
            [
                "        cached = self._cache.get(user_id)",
                f"        if cached is not None and cached.age() < {seconds}:",
                "            return cached.value",
                "        value = self._db.query_permissions(user_id)",
                "        self._cache.put(user_id, value)",
                "        return value",
            ],
            [],
        ),
        "go": (
            f"func (p *Permissions) {fn}(ctx context.Context, userID string) ([]string, error) {{",
            [],
            ["\treturn p.db.QueryPermissions(ctx, userID)"],
            [
                f"\tif entry, ok := p.cache.Get(userID); ok && time.Since(entry.At) < {seconds}*time.Second {{",
                "\t\treturn entry.Value, nil",
                "\t}",
                "\tperms, err := p.db.QueryPermissions(ctx, userID)",
                "\tif err == nil {",
                "\t\tp.cache.Put(userID, perms)",
                "\t}",
                "\treturn perms, err",
            ],
            ["}"],
        ),
        "ts": (
            f"export async function {fn}(userId: string): Promise<string[]> {{",
            [],
            ["  return db.queryPermissions(userId);"],
            [
                "  const hit = cache.get(userId);",
                f"  if (hit && Date.now() - hit.at < {seconds * 1000}) {{",
                "    return hit.value;",
                "  }",
                "  const value = await db.queryPermissions(userId);",
                "  cache.set(userId, { value, at: Date.now() });",
                "  return value;",
            ],
            ["}"],
        ),
        "rs": (
            f"pub fn {fn}(&mut self, user_id: &str) -> Result<Vec<String>, Error> {{",
            [],
            ["    self.db.query_permissions(user_id)"],
            [
                "    if let Some(entry) = self.cache.get(user_id) {",
                f"        if entry.at.elapsed() < Duration::from_secs({seconds}) {{",
                "            return Ok(entry.value.clone());",
                "        }",
                "    }",
                "    let value = self.db.query_permissions(user_id)?;",
                "    self.cache.insert(user_id.to_string(), Entry::new(value.clone()));",
                "    Ok(value)",
            ],
            ["}"],
        ),
    }[lang]
    title = pick(
        rng,
        f"Cache {noun} permission lookups in {module}",
        f"perf({module}): avoid a database round trip per request",
        f"Speed up {fn} with a {seconds}s cache",
    )
    body = pick(
        rng,
        f"Profiling the {module} endpoints showed that `{fn}` hits the database on every request; p99 latency went from 40 ms to 310 ms under load. Cache results for {seconds} seconds.",
        f"Every {noun} request resolves permissions again. A short-lived cache ({seconds} s) removes most of the queries without serving stale grants for long.",
    )
    return Change("optimization", title, body, [path], random_hunk(path, rng, code[0], *code[1:]))


def data_processing(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun = ctx["language"], ctx["noun"]
    fn = ident(lang, "parse", noun, "row")
    path = source_path(ctx, "csv_import")
    code = {
        "py": (
            f"def {fn}(row):",
            [],
            ['    return {"id": row["id"], "amount": float(row["amount"]), "date": parse_date(row["date"])}'],
            [
                '    amount = row.get("amount", "").strip()',
                '    date = row.get("date", "").strip()',
                '    if not row.get("id"):',
                '        raise RowError("id is empty")',
                "    return {",
                '        "id": row["id"],',
                '        "amount": float(amount.replace(",", "")) if amount else None,',
                '        "date": parse_date(date) if date else None,',
                "    }",
            ],
            [],
        ),
        "go": (
            f"func {fn}(record []string, header map[string]int) ({ident('go', noun)}, error) {{",
            [],
            [
                '\tamount, _ := strconv.ParseFloat(record[header["amount"]], 64)',
                f"\treturn {ident('go', noun)}{{ID: record[0], Amount: amount}}, nil",
            ],
            [
                '\tcol, ok := header["amount"]',
                "\tif !ok || col >= len(record) {",
                "\t\treturn " + ident("go", noun) + '{}, fmt.Errorf("missing amount column")',
                "\t}",
                '\traw := strings.ReplaceAll(strings.TrimSpace(record[col]), ",", "")',
                "\tvar amount *float64",
                '\tif raw != "" {',
                "\t\tv, err := strconv.ParseFloat(raw, 64)",
                "\t\tif err != nil {",
                "\t\t\treturn " + ident("go", noun) + '{}, fmt.Errorf("amount %q: %w", raw, err)',
                "\t\t}",
                "\t\tamount = &v",
                "\t}",
                f"\treturn {ident('go', noun)}{{ID: record[0], Amount: amount}}, nil",
            ],
            ["}"],
        ),
        "rs": (
            f"pub fn {fn}(record: &StringRecord, header: &Header) -> Result<{noun.capitalize()}, ImportError> {{",
            [],
            [
                "    let amount: f64 = record[header.amount].parse().unwrap();",
                f"    Ok({noun.capitalize()} {{ id: record[0].to_string(), amount }})",
            ],
            [
                '    let raw = record.get(header.amount).ok_or(ImportError::MissingColumn("amount"))?.trim().replace(\',\', "");',
                "    let amount = if raw.is_empty() { None } else { Some(raw.parse::<f64>().map_err(|e| ImportError::BadNumber(raw.clone(), e))?) };",
                f"    Ok({noun.capitalize()} {{ id: record[0].to_string(), amount }})",
            ],
            ["}"],
        ),
    }.get(lang)
    if code is None:
        return optimization(rng, ctx)
    title = pick(
        rng,
        f"Accept empty and thousands-separated amounts in {noun} CSV imports",
        "import: don't crash on blank amount cells",
        f"Make the {noun} CSV parser tolerant of exports from spreadsheets",
    )
    body = pick(
        rng,
        f'Spreadsheet exports write amounts like "1,250.00" and leave blank cells; `{fn}` crashed on both and the whole import failed. Blank amounts now become null and separators are stripped.',
        f"Customers importing {noun}s from accounting tools hit ValueError on the first blank cell (#{ctx['issue']}).",
    )
    return Change("data_processing", title, body, [path], random_hunk(path, rng, code[0], *code[1:]))


def testing(rng: random.Random, ctx: dict, subject: Change | None = None) -> Change:
    lang, noun, module = ctx["language"], ctx["noun"], ctx["module"]
    name = ident(lang, "test", noun, "roundtrip", "preserves", "order")
    path = {
        "py": f"tests/{module}/test_{noun}_codec.py",
        "go": f"internal/{module}/{noun}_codec_test.go",
        "ts": f"src/{module}/__tests__/{noun}Codec.test.ts",
        "rs": f"tests/{module}_{noun}_codec.rs",
    }[lang]
    added = {
        "py": [
            f"def {name}():",
            f"    items = [make_{noun}(i) for i in range(5)]",
            f"    decoded = decode_{noun}s(encode_{noun}s(items))",
            "    assert [i.id for i in decoded] == [i.id for i in items]",
        ],
        "go": [
            f"func {ident('go', name)}(t *testing.T) {{",
            f"\titems := make{ident('go', noun)}s(5)",
            "\tgot, err := Decode(Encode(items))",
            "\tif err != nil {",
            "\t\tt.Fatal(err)",
            "\t}",
            "\tif !reflect.DeepEqual(ids(got), ids(items)) {",
            '\t\tt.Fatalf("order changed: %v", ids(got))',
            "\t}",
            "}",
        ],
        "ts": [
            f'it("{noun} codec round trip keeps the order", () => {{',
            f"  const items = Array.from({{ length: 5 }}, (_, i) => make{noun.capitalize()}(i));",
            "  expect(decode(encode(items)).map((i) => i.id)).toEqual(items.map((i) => i.id));",
            "});",
        ],
        "rs": [
            "#[test]",
            f"fn {name}() {{",
            f"    let items: Vec<_> = (0..5).map(make_{noun}).collect();",
            "    let decoded = decode(&encode(&items)).unwrap();",
            "    assert_eq!(decoded.iter().map(|i| i.id).collect::<Vec<_>>(), items.iter().map(|i| i.id).collect::<Vec<_>>());",
            "}",
        ],
    }[lang]
    title = pick(
        rng,
        f"Add a round-trip test for the {noun} codec",
        f"test({module}): cover {noun} encoding order",
        f"Regression test for {noun} order after decode",
    )
    body = pick(
        rng,
        f"The {noun} codec had no test for ordering, which is how #{ctx['issue']} slipped through. This adds one.",
        f"Adds coverage for encoding and decoding {noun}s in {module}; the order must survive a round trip.",
    )
    return Change("testing", title, body, [path], random_hunk(path, rng, "", ["", ""], [], added, []))
