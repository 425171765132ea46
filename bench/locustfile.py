"""Mixed shopper traffic for ``bench.load_test`` (run by locust in its own process; imports nothing of the project).

Environment: ``LOAD_IMAGES`` (a folder of query photos), ``LOAD_QUERIES`` (``|``-separated texts).
Request names (the rows of the report): text, image, hybrid, recommend.
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, between, events, task

PHOTOS: list[bytes] = []
QUERIES = os.environ.get("LOAD_QUERIES", "red dress|black leather jacket|blue jeans|running shoes").split("|")
USERS: list[str] = []
FILTERS = [None, {"price <=": 100}, {"gender": ["Women", "Unisex"]}, {"master_category": "Apparel"}]


@events.test_start.add_listener
def _load(environment, **_kwargs) -> None:
    folder = os.environ["LOAD_IMAGES"]
    for name in sorted(os.listdir(folder))[:16]:
        with open(os.path.join(folder, name), "rb") as fh:
            PHOTOS.append(fh.read())


class Shopper(FastHttpUser):
    wait_time = between(0, 0)  # closed loop: each user sends its next request when the last is answered

    def on_start(self) -> None:
        if not USERS:
            with self.client.get("/api/v1/users", name="users", catch_response=True) as r:
                USERS.extend(u["user_id"] for u in r.json())

    def _check(self, response) -> None:
        if response.status_code != 200:
            response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(4)
    def text(self) -> None:
        body = {"query": random.choice(QUERIES), "index": random.choice(["image", "text", "hybrid"]), "limit": 12}
        flt = random.choice(FILTERS)
        if flt:
            body["filters"] = flt
        with self.client.post("/api/v1/search/text", json=body, name="text", catch_response=True) as r:
            self._check(r)

    @task(2)
    def image(self) -> None:
        files = {"file": ("q.jpg", random.choice(PHOTOS), "image/jpeg")}
        with self.client.post("/api/v1/search/image", files=files, data={"limit": "12"}, name="image",
                              catch_response=True) as r:
            self._check(r)

    @task(2)
    def hybrid(self) -> None:
        files = {"file": ("q.jpg", random.choice(PHOTOS), "image/jpeg")}
        data = {"query": random.choice(QUERIES), "text_weight": "0.5", "limit": "12",
                "filters": json.dumps(random.choice(FILTERS) or {})}
        with self.client.post("/api/v1/search/hybrid", files=files, data=data, name="hybrid",
                              catch_response=True) as r:
            self._check(r)

    @task(2)
    def recommend(self) -> None:
        user = random.choice(USERS) if USERS else "user_006327"
        with self.client.get(f"/api/v1/recommendations/{user}?limit=12", name="recommend",
                             catch_response=True) as r:
            self._check(r)
