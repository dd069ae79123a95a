"""`quiver serve` from Python: the client `quiver.connect`, and the web
explorer in a real browser: Debian's chromium
driven by Playwright. Screenshots land in target/ui/ for a person to look at.
Needs `chromium` (scripts/deps.sh installs it) and `playwright` (pip)."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

import quiver
from test_quiver import BIN, ROOT, social

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "target" / "ui"


@pytest.fixture
def server(tmp_path):
    path = tmp_path / "db"
    with social(path, users=600) as db:
        db.train("m", {"dim": 8, "epochs": 4, "threads": 1}, device="cpu", progress=False)
    p = subprocess.Popen([BIN, "serve", str(path), "--bind", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        yield p.stdout.readline().split()[2]
    finally:
        p.kill()
        p.wait()


def test_the_explorer_in_a_browser(server):
    from playwright.sync_api import expect, sync_playwright

    assert os.path.exists(CHROMIUM), "chromium is not installed (scripts/deps.sh installs it)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        expect(page.get_by_test_id("model")).to_have_value("m")

        # A query: rows in the table.
        page.get_by_test_id("query").fill("MATCH (u:User {key: 'u1'})-[f:Follows]->(v) RETURN u, f, v.key AS who")
        page.get_by_test_id("run").click()
        table = page.get_by_test_id("results")
        expect(table.locator("th").first).to_have_text("u")
        rows = table.locator("tbody tr")
        expect(rows.first).to_contain_text("(:User u1)")
        assert rows.count() >= 1
        page.screenshot(path=str(SHOTS / "table.png"))

        # An error, marked at its line and column.
        page.get_by_test_id("query").fill("MATCH (u:User)\nRETURN nope")
        page.get_by_test_id("run").click()
        expect(page.get_by_test_id("error")).to_contain_text("line 2, column 8")
        page.screenshot(path=str(SHOTS / "error.png"))

        # The graph: a click on a node expands it and opens its panel with neighbours by the model.
        page.get_by_test_id("query").fill("MATCH (u:User {key: 'u1'})-[f:Follows]->(v) RETURN u, f, v")
        page.get_by_test_id("run").click()
        expect(page.get_by_test_id("error")).to_be_hidden()
        page.get_by_test_id("view-graph").click()
        graph = page.get_by_test_id("graph")
        expect(graph).to_be_visible()
        before = page.evaluate("cy.nodes().length")
        assert before >= 2
        pos = page.evaluate("(() => { const n = cy.getElementById('User\\u0000u1'); const p = n.renderedPosition(); return [p.x, p.y]; })()")
        box = graph.bounding_box()
        page.mouse.click(box["x"] + pos[0], box["y"] + pos[1])
        panel = page.get_by_test_id("node-panel")
        expect(panel).to_contain_text("User u1")
        expect(panel).to_contain_text('key: "u1"')
        expect(panel).to_contain_text("nearest by m")
        expect(panel.locator("ol li")).to_have_count(10)
        page.wait_for_function(f"cy.nodes().length > {before}")
        page.screenshot(path=str(SHOTS / "graph.png"))

        # A path: one cell in the table, its nodes and relationships in the graph.
        page.get_by_test_id("view-table").click()
        page.get_by_test_id("query").fill(
            "MATCH p = (u:User {key: 'u1'})-[:Follows*2]->(v) RETURN p, [n IN nodes(p) | n.key] AS ks LIMIT 1"
        )
        page.get_by_test_id("run").click()
        expect(page.get_by_test_id("error")).to_be_hidden()
        cells = page.get_by_test_id("results").locator("tbody tr").first.locator("td")
        expect(cells.first).to_contain_text("(:User u1)-[:Follows]-(:User ")
        keys = json.loads(cells.nth(1).inner_text())
        page.get_by_test_id("view-graph").click()
        for a, b in zip(keys, keys[1:]):
            page.wait_for_function(f"cy.getElementById('User\\u0000{a}\\u0001Follows\\u0001User\\u0000{b}').length === 1")

        # The embedding map: points drawn; hovering one shows its key.
        page.get_by_test_id("view-map").click()
        expect(page.locator("#map-status")).to_contain_text("of 600 rows")
        canvas = page.get_by_test_id("embedding-map")
        p = page.evaluate("[map.px[0], map.py[0], map.keys[0]]")
        cb = canvas.bounding_box()
        page.mouse.move(cb["x"] + p[0], cb["y"] + p[1])
        expect(page.locator("#tip")).to_have_text(p[2])
        page.screenshot(path=str(SHOTS / "map.png"))
        page.get_by_test_id("map-colour").select_option("4")
        expect(page.locator("#map-status")).to_contain_text("4 k-means modes")
        assert sorted(set(page.evaluate("map.mode"))) == [0, 1, 2, 3]
        page.screenshot(path=str(SHOTS / "map-modes.png"))

        # A model's page with its validation curve.
        page.get_by_test_id("view-models").click()
        expect(page.get_by_test_id("models")).to_contain_text("dim 8")
        expect(page.get_by_test_id("curve").locator("canvas")).to_have_count(1)
        expect(page.get_by_test_id("loss-curve").locator("canvas")).to_have_count(1)
        page.screenshot(path=str(SHOTS / "models.png"))

        # The one error is the browser's note of the deliberate 400 above.
        assert errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"], errors
        browser.close()


def test_the_page_is_small():
    total = sum(f.stat().st_size for f in pathlib.Path(ROOT / "ui").rglob("*") if f.suffix in (".html", ".js", ".css"))
    assert total <= 1 << 20, total


def test_connect_gives_the_embedded_api_over_http(tmp_path):
    path = tmp_path / "db"
    social(path).close()
    token = tmp_path / "token"
    token.write_text("t0ken")
    server = subprocess.Popen([BIN, "serve", str(path), "--bind", "127.0.0.1:0", "--token-file", str(token)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[2]

        def work(db):
            """Code that runs unchanged on either handle."""
            rows = db.query("MATCH (u:User {key: $k})-[:Follows]->(v) RETURN v.key AS who ORDER BY who", {"k": "u1"})
            p = db.prepare("MATCH (u:User {key: $k}) RETURN u")
            db.execute_many("CREATE (:User {key: row.k})", [{"k": "n1"}, {"k": "n2"}])
            with pytest.raises(quiver.QuerySyntaxError) as e:
                db.query("MATCH (u:User)\nRETURN nope")
            return (rows.columns, rows.rows, list(rows), rows.to_pandas().shape, db.execute(p, {"k": "n2"}).rows,
                    (e.value.line, e.value.column), db.stats()["nodes"])

        served = quiver.connect(url, token="t0ken")
        import shutil

        # The embedded answer comes from a copy of the database as it was.
        shutil.copytree(path, tmp_path / "copy")
        with quiver.open(tmp_path / "copy") as embedded:
            want = work(embedded)
        with served as db:
            assert work(db) == want
            assert db.models() == []
        with pytest.raises(quiver.Error) as e:
            quiver.connect(url).query("RETURN 1")
        assert (e.value.status, e.value.kind) == (401, "unauthorized")
        with pytest.raises(quiver.QueryError) as e:
            quiver.connect(url, token="t0ken").query("RETURN $missing")
        assert e.value.status == 400
    finally:
        server.kill()
        server.wait()
