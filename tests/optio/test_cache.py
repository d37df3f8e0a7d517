"""optio.cache.RedisCache: Django's Redis cache, keeping one client per connection pool."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from optio.cache import RedisCache
from tests.services import redis_url


def test_it_keeps_one_client_and_stores_what_djangos_backend_reads():
    url = redis_url()
    ours, django = RedisCache(url, {}), DjangoRedisCache(url, {})
    key = f"optio-test-{uuid.uuid4().hex}"
    try:
        assert ours.add(key, {"seq": 7}, 5) is True
        assert ours.add(key, {"seq": 8}, 5) is False  # add never overwrites
        assert django.get(key) == {"seq": 7}  # same keys and serialisation as Django's own
        assert ours._cache.get_client(write=True) is ours._cache.get_client(write=True)
        with ThreadPoolExecutor(8) as pool:  # shared by threads, as worker threads do
            assert all(pool.map(lambda _: ours.get(key) == {"seq": 7}, range(200)))
        assert ours.delete(key) is True
        assert django.get(key) is None
    finally:
        django.delete(key)
