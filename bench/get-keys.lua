-- wrk script: GET keys written by put-unique.lua, cycling over KEYS keys per thread id 1..THREADS.
function init(args)
    keys = tonumber(os.getenv("KEYS") or "1000")
    threads = tonumber(os.getenv("THREADS") or "1")
    n = 0
end

function request()
    n = n + 1
    local t = (n % threads) + 1
    local k = (n % keys) + 1
    return wrk.format("GET", "/store/bench/" .. t .. "-" .. k)
end

function response(status, headers, body)
    if status ~= 200 then
        wrk.thread:stop()
    end
end
