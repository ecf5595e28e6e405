-- publish_many.lua: the end of scriptPublishMany (scripts.go), which runs
-- the calls of several channels that went to Redis together (pipeline.go),
-- each a group of publish.lua (wrapped as the function group), one after
-- another. A group that fails (a key of another type, say) answers, in its
-- own slots, "err" and Redis's message, padded to its answer's length; the
-- groups before it have published and the groups after it still run, as
-- each would alone.
local b, k = 6, 0
while b < #ARGV do
  local o, np = #out, ARGV[b + 1] + 0
  local ok, err = pcall(group, b, k)
  if not ok then
    for i = #out, o + 1, -1 do out[i] = nil end
    out[o + 1], out[o + 2] = 'err', type(err) == 'table' and err.err or tostring(err)
    for i = 1, 4 * np do out[o + 2 + i] = 0 end
  end
  b, k = b + 13 + np, k + 9
end
return out
