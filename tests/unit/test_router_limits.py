"""Bounds on what a client can make the router keep: strings in program bodies (a clear 400
naming the field past its bound) and the program listing, served a page at a time."""

from __future__ import annotations

from router_harness import error_of, register, run, setup


def test_an_answer_past_its_bound_is_a_400_naming_it_and_nothing_is_kept() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, _):
            await register(client, "p")
            long = "9" * 4097
            resp = await client.post("/programs/p/finish", json={"answer": long})
            assert "answer" in error_of(resp, 400)["message"]
            assert router.programs.get("p").answer is None
            report = {"used": 1, "answers": {"b0": long}}
            assert (
                "answers"
                in error_of(await client.post("/programs/p/report", json=report), 400)["message"]
            )
            report = {"used": 1, "answers": {"b" * 257: "1"}}
            error_of(await client.post("/programs/p/report", json=report), 400)
            resp = await client.post("/programs", json={"program_id": "x" * 257})
            assert "program_id" in error_of(resp, 400)["message"]
            ok = await client.post("/programs/p/finish", json={"answer": "9" * 4096})
            assert ok.status_code == 200 and ok.json()["answer"] == "9" * 4096

    run(scenario)


def test_the_program_listing_comes_in_pages() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _fakes):
            for i in range(5):
                await register(client, f"p{i}")
            first = (await client.get("/programs", params={"limit": 2})).json()
            assert [p["program_id"] for p in first["programs"]] == ["p0", "p1"]
            assert (first["total"], first["offset"], first["next_offset"]) == (5, 0, 2)
            last = (await client.get("/programs", params={"offset": 4, "limit": 2})).json()
            assert [p["program_id"] for p in last["programs"]] == ["p4"]
            assert last["next_offset"] is None
            everything = (await client.get("/programs")).json()
            assert everything["total"] == len(everything["programs"]) == 5
            error_of(await client.get("/programs", params={"limit": 0}), 400)
            error_of(await client.get("/programs", params={"limit": 10_001}), 400)
            error_of(await client.get("/programs", params={"offset": -1}), 400)

    run(scenario)
