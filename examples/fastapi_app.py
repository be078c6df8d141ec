"""A FastAPI service that enqueues from an endpoint, in the same SQLAlchemy transaction as
its own row, and mounts tasktrail's dashboard.

    python examples/fastapi_app.py            # the demo, offline (fastapi-example.db)
    uvicorn examples.fastapi_app:api          # serve it: POST /websites?url=…, /tasktrail/

Offline on one SQLite file (the business table and the jobs), or on PostgreSQL with
``TASKTRAIL_DSN=postgresql://…`` (SQLAlchemy through psycopg 3). Needs the ``sqlalchemy``
and ``dashboard`` extras and FastAPI (``pip install fastapi``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from sqlalchemy.orm import Session

import tasktrail
from tasktrail.dashboard import create_app

DSN = os.environ.get("TASKTRAIL_DSN") or "sqlite:///fastapi-example.db"
app = tasktrail.App(DSN)
engine = sa.create_engine(DSN.replace("postgresql://", "postgresql+psycopg://", 1).split("?")[0])
metadata = sa.MetaData()
websites = sa.Table(
    "websites",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("url", sa.String(200), nullable=False),
    sa.Column("title", sa.String(200)),
)


@app.task(name="fetch_title")
def fetch_title(website_id: int) -> str:
    """Runs in a worker's process: reads the row, writes what it found (offline here)."""
    with engine.begin() as conn:
        url = conn.execute(
            sa.select(websites.c.url).where(websites.c.id == website_id)
        ).scalar_one()
        title = url.removeprefix("https://").split(".")[0].title()
        conn.execute(websites.update().where(websites.c.id == website_id).values(title=title))
    return title


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    app.setup()  # tasktrail's tables first (on SQLite: the file in WAL mode), then ours
    metadata.create_all(engine)
    yield
    app.close()


api = FastAPI(title="websites", lifespan=lifespan)
api.mount("/tasktrail", create_app(app))  # the dashboard, read-only here


@api.post("/websites")
def add_website(url: str) -> dict[str, int]:
    """The row and its job in one transaction: both exist, or neither."""
    if not url.startswith("https://"):
        raise HTTPException(400, "url must start with https://")
    with Session(engine) as session:
        website_id = session.execute(websites.insert().values(url=url)).inserted_primary_key[0]
        job = fetch_title.enqueue(website_id, ref=("website", website_id), connection=session)
        session.commit()
    return {"website": website_id, "job": job.id}


@api.get("/websites/{website_id}")
def get_website(website_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(websites).where(websites.c.id == website_id)).one_or_none()
    if row is None:
        raise HTTPException(404, f"no website {website_id}")
    jobs = app.jobs(ref=("website", website_id), limit=None)
    return {"url": row.url, "title": row.title, "jobs": [job.status for job in jobs]}


def demo() -> None:
    """Two websites through the API, a worker until the queue is empty, what it did."""
    from fastapi.testclient import TestClient

    with TestClient(api) as client:
        added = [client.post("/websites", params={"url": url}).json()
                 for url in ("https://acme.example", "https://globex.example")]  # fmt: skip
        refused = client.post("/websites", params={"url": "ftp://nope"})
        print(f"refused: {refused.json()['detail']} (no row, no job)")
    # the worker (forking: not while the test client's thread runs); in production,
    # `tasktrail worker --app examples.fastapi_app:app` on any host
    app.run_worker(processes=2, burst=True)
    with TestClient(api) as client:
        for item in added:
            print(f"website {item['website']}:", client.get(f"/websites/{item['website']}").json())
        page = client.get(f"/tasktrail/refs/website/{added[0]['website']}")
        print(f"dashboard /tasktrail/refs/website/{added[0]['website']}: HTTP {page.status_code}")


if __name__ == "__main__":
    sys.exit(demo())
