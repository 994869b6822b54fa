"""Drives the redis_acl filter with the redis-py client: each scenario prints one line
`name=value`, checked by e2e/tests/redis_acl.rs."""
import sys

import redis

port = int(sys.argv[1])
direct = int(sys.argv[2])


def conn(password=None, username=None):
    return redis.Redis(host="127.0.0.1", port=port, password=password, username=username,
                       socket_timeout=10)


def err_name(e):
    return type(e).__name__


# 1. Authentication, answered by the filter.
try:
    conn("wrong").ping()
    print("wrong_key=accepted")
except redis.exceptions.RedisError as e:
    print("wrong_key=" + err_name(e))
try:
    conn().get("a")
    print("no_auth=accepted")
except redis.exceptions.RedisError as e:
    print("no_auth=" + err_name(e) + ":" + str(e).split()[0])
w = conn("writer")
print("writer_ping=%s" % w.ping())
print("user_and_key=%s" % conn("reader", username="someone").ping())

# 2. A pipeline with a refused command in the middle: one reply per command, in order.
p = w.pipeline(transaction=False)
p.set("a", "1")
p.flushall()
p.get("a")
p.incr("n")
res = p.execute(raise_on_error=False)
print("pipeline=" + ",".join(err_name(r) if isinstance(r, Exception) else repr(r) for r in res))

# 3. MULTI/EXEC with a refused command: the transaction is aborted, as Redis does.
p = w.pipeline(transaction=True)
p.set("t", "1")
p.delete("a")
try:
    p.execute()
    print("multi=executed")
except redis.exceptions.RedisError as e:
    print("multi=" + err_name(e))
print("t_after_abort=%r" % redis.Redis(host="127.0.0.1", port=direct).get("t"))
p = w.pipeline(transaction=True)
p.set("t", "2")
p.get("t")
print("multi_ok=%r" % p.execute())

# 4. A large value spanning many reads, both ways.
big = bytes(i % 251 for i in range(5 * 1024 * 1024))
w.set("big", big)
print("big_roundtrip=%s" % (w.get("big") == big))
print("big_direct=%s" % (redis.Redis(host="127.0.0.1", port=direct).get("big") == big))

# 5. A reader may not write; nothing reached Redis.
r = conn("reader")
try:
    r.set("r", "x")
    print("reader_set=accepted")
except redis.exceptions.RedisError as e:
    print("reader_set=" + err_name(e))
print("reader_set_direct=%r" % redis.Redis(host="127.0.0.1", port=direct).get("r"))
print("reader_get=%r" % r.get("a"))
