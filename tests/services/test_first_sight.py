"""A gateway's user is created on first sight, even when that first sight races: with another
first request of the same user, or (SQLite) in a request that only reads while another writer
commits."""

from __future__ import annotations

import threading
import time

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import User
from tuneforge.services import accounts


def test_a_first_request_that_races_another_finds_its_user(settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    reader = make_sessionmaker(engine.execution_options(read_only=True))
    with transaction(factory) as session:
        accounts.create_user(session, "ada", "password-ada")  # so the database exists
    found: list[User] = []
    with transaction(reader, read_only=True) as request:
        # The request has read (on SQLite its snapshot starts here) and not seen "gil" ...
        assert accounts.get_user(request, "gil") is None
        created = threading.Event()

        def first_request() -> None:
            with transaction(factory) as other:
                accounts.create_user(other, "gil", None)
                other.flush()
                created.set()
                time.sleep(0.5)  # ... while another first request of gil's holds its insert

        racer = threading.Thread(target=first_request)
        racer.start()
        assert created.wait(10)
        found.append(accounts.ensure_user(request, "gil"))
        racer.join()
    with transaction(factory) as session:
        stored = session.query(User).filter(User.username == "gil").all()
    assert len(stored) == 1 and found[0].id == stored[0].id
    engine.dispose()
