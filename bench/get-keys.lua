-- wrk script: GET keys written by put-unique.lua, cycling over KEYS keys per thread id 1..THREADS.
-- Keys start at 2: wrk builds (and drops) one request per thread before sending, so key 1 may not exist.
function init(args)
    keys = tonumber(os.getenv("KEYS") or "1000")
    threads = tonumber(os.getenv("THREADS") or "1")
    n = 0
end

function request()
    n = n + 1
    local t = (n % threads) + 1
    local k = (n % keys) + 2
    return wrk.format("GET", "/store/bench/" .. t .. "-" .. k)
end
