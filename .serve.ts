import Koa from 'koa';
import { createStatechartRouter } from './src/http/statechart.routes.ts';
const app = new Koa();
app.use(createStatechartRouter().routes());
app.listen(5173, () => console.log('up'));
