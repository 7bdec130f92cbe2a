-- tollgate-analytics has no settings: it only carries what the relay measured into Kong's log.
local typedefs = require("kong.db.schema.typedefs")

return {
  name = "tollgate-analytics",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {} } },
  },
}
