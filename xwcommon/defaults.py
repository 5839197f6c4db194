"""Every tunable default in one place, each with its unit."""

API_PREFIX = "/api/v1"
DEFAULT_PORT = 4325  # XWHEP's HTTPS port

TOKEN_TTL_S = 24 * 3600
LEASE_S = 60.0  # a task's lease; a heartbeat extends it
HEARTBEAT_INTERVAL_S = 15.0  # workers heartbeat this often (a quarter of the lease)
REAPER_INTERVAL_S = 2.0  # how often the server looks for expired leases
WORK_REQUEST_WAIT_S = 20.0  # long-poll: how long a work request may wait for a job
#: long-polling work requests one server process keeps waiting; beyond, a worker is told
#: to come back later (each costs a connection and a coroutine, and every submission
#: wakes them in turn)
MAX_WAITING_REQUESTS = 1000
#: work requests one process runs through the database at once; beyond, 503 with Retry-After
#: (heartbeats and reports alone are never refused for it)
MAX_WORK_IN_FLIGHT = 64
#: the mean delay told to a worker that finds no room to wait (jittered, and longer the
#: fuller the server is)
COME_BACK_S = 10.0
#: longest a request waits for a database connection before it is answered 503
DB_WAIT_S = 10.0
WORK_REQUEST_RECHECK_S = 0.5  # long-poll re-check for jobs submitted through another process
MAX_RETRY = 3  # how many times a lost job is rescheduled before it ends in ERROR
MAX_BODY_BYTES = 64 * 1024 * 1024 * 1024  # upload limit for data bodies
MAX_JSON_BYTES = 32 * 1024 * 1024  # limit for JSON bodies (a bulk of a few thousand jobs)
#: free space the server keeps on its data store's disk: an upload that would eat into it is
#: refused (507) before it is read, so the database, the logs and the journal still have room
DISK_RESERVE_BYTES = 256 * 1024 * 1024
MAX_BULK_JOBS = 5000
STREAM_CHUNK_BYTES = 1024 * 1024
#: a task's result archive up to this size rides inline in its report (one round trip less)
INLINE_RESULT_MAX_BYTES = 64 * 1024
BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
INLINE_RESULT_BYTES = 256 * 1024  # results up to this size may ride with the report
GC_INTERVAL_S = 3600.0  # how often the server collects orphan results and unreferenced files
GC_GRACE_S = 3600.0  # only what is older than this is collected (uploads in flight are younger)
LOGIN_FAILURES_ALLOWED = 5  # failed logins per login name before each further attempt must wait
LOGIN_BACKOFF_START_S = 1.0  # the first wait; it doubles with every further failure
LOGIN_BACKOFF_CAP_S = 900.0  # the longest wait; failures are forgotten this long after the last wait
LOGIN_ADDRESS_FACTOR = 4  # a client address may fail this many times more (shared addresses, NAT)
LOGIN_THROTTLE_MAX_ENTRIES = 100_000  # logins and addresses remembered at most
HOST_KEY_ROTATE_S = 7 * 24 * 3600.0  # a host credential older than this is replaced at its next use
VERIFIED_PASSWORDS_MAX = 10_000  # correct passwords a server process remembers (as HMACs)
HOST_LOST_HEARTBEATS = 4.0  # a host silent for this many heartbeat intervals shows as LOST
HOST_PRUNE_AFTER_S = 30 * 24 * 3600.0  # a host LOST this long is removed (unless its tasks are on record)

# data by URL (xwserver/urls.py, xwworker/cache.py)
URL_FETCH_MAX_BYTES = 1024**3  # the largest document the server fetches to learn its digest
URL_FETCH_TIMEOUT_S = 60.0  # the longest such a fetch may take, in all
URL_DOWNLOAD_TIMEOUT_S = 3600.0  # the longest a worker's or a client's fetch of data by URL may take
