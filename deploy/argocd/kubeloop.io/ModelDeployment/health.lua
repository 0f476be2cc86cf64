-- Argo CD health of a kubeloop.io ModelDeployment, from status.conditions (Ready, Progressing,
-- Degraded) and status.observedGeneration
-- (argocd-cm: resource.customizations.health.kubeloop.io_ModelDeployment).
local hs = {status = "Progressing", message = "Waiting for the operator"}

local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end

local function says(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

for _, t in ipairs({"Degraded", "Stalled"}) do
  local c = condition(t)
  if c ~= nil and c.status == "True" then
    hs.status = "Degraded"
    hs.message = says(c, t)
    return hs
  end
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = says(ready, "Invalid spec")
  return hs
end

local progressing = condition("Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = says(progressing, "Rolling out")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready, "Serving")
  return hs
end

hs.message = says(ready, "Waiting for ready replicas")
return hs
