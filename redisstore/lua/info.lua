-- info.lua returns a channel's info, stat and last options, or {nf}; no
-- arguments.
if not live() then return {'nf'} end
return info(expired)
