-- recheck.lua looks again for a parked waiter after the notifications
-- may have been missed. Arguments: cursor score, gen, instance. Returns
-- {msg, id, payload} (and uncounts the waiter), {same} when nothing
-- happened since it parked, or {changed}. A waiter that stays (same)
-- renews its instance's interest (a replica promoted before it had the
-- registration may lack it).
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'changed'} end
local id, payload = firstAfter(ARGV[7])
local same = M.gen == ARGV[8]
if id then
  if same then
    -- Counted once, here. When the gen moved, the publication that ended
    -- its wait counted it already (it was in w), though its notification
    -- never came: counting it again would remove a message received once.
    delivered(id, 1)
    uncountPolls(ARGV[9], 1)
  end
  settl({})
  return {'msg', id, payload}
end
if same then
  local written = {}
  interest(ARGV[9], written)
  if #written > 0 then settl(written) end
  return {'same'}
end
return {'changed'}
