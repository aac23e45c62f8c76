// `moepoolctl quota MODEL [--weight W] [--min SIZE] [--max SIZE]`: sets a model's share of
// the pool (Admin.SetQuota; fields not given keep their value) and prints the quota now in
// force. With no option it only prints it.
#include <iostream>

#include "commands.h"
#include "common/json_writer.h"
#include "common/units.h"

namespace moepool::ctl {

Status cmd_quota(AdminChannel& ch, const Options& o) {
  v1::SetQuotaRequest req;
  req.set_model(o.quota_model);
  if (o.weight) req.set_weight(*o.weight);
  if (o.min_size) {
    auto v = parse_size(*o.min_size);
    if (!v.ok()) return InvalidArgument("--min: " + v.status().message());
    req.set_min_bytes(*v);
  }
  if (o.max_size) {
    auto v = parse_size(*o.max_size);
    if (!v.ok()) return InvalidArgument("--max: " + v.status().message());
    req.set_max_bytes(*v);
  }
  v1::SetQuotaReply r;
  auto ctx = ch.context();
  grpc::Status gs = ch.stub()->SetQuota(ctx.get(), req, &r);
  if (!gs.ok()) return ch.error(gs, "SetQuota");
  if (o.json) {
    JsonWriter w;
    w.begin_object();
    w.field("model", o.quota_model);
    w.field("weight", r.weight());
    w.field("min_bytes", r.min_bytes());
    w.field("max_bytes", r.max_bytes());
    w.end_object();
    std::cout << w.str() << '\n';
  } else {
    std::cout << "model " << o.quota_model << ": weight " << weight_text(r.weight()) << ", min "
              << format_bytes(r.min_bytes()) << ", max "
              << (r.max_bytes() ? format_bytes(r.max_bytes()) : std::string("none")) << '\n';
  }
  return Status::Ok();
}

}  // namespace moepool::ctl
